"""Field descriptions from the docstring under each field, read lazily.

Every typed config here documents a field with a string right below it (STYLE.md, habit 4); the
descriptions feed the README tables, the CLI help and the DAG trigger forms. Pydantic's
`use_attribute_docstrings=True` reads them too, but on Python < 3.13 it finds the class source by
walking the call stack through `inspect.getmodule`, whose first call resolves the file of every loaded
module: after `import airflow.sdk` (about 1,400 modules) that cost ~150 ms per process, paid by every
DAG file that imports the settings.

`field_docstrings` therefore only marks a model: nothing is read at import (parsing the source of
`llmops/settings.py` alone cost every DAG file ~13 ms). The descriptions are read from the class's own
module source the first time someone asks for them: `describe(Model)` (the README tables, the CLI
help, a DAG Param's description), or `Model.model_json_schema()`, which rebuilds a schema built without
them first. Code that reads `FieldInfo.description` of a marked model calls `describe` first.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import sys
import textwrap
import typing
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=type[BaseModel])

_MARKED: set[type[BaseModel]] = set()
"""Models decorated with `field_docstrings`."""
_DESCRIBED: set[type[BaseModel]] = set()
"""Marked models whose fields got their docstrings."""
_STALE: set[type[BaseModel]] = set()
"""Described models whose schema had been built without the descriptions (rebuilt on the next JSON schema)."""


def attribute_docstrings(source: str, class_name: str) -> dict[str, str]:
    """`{field: docstring}` for the annotated assignments of class `class_name` in `source` that are
    directly followed by a string literal (the same rule as pydantic's `use_attribute_docstrings`)."""
    return _class_docstrings(_parse(textwrap.dedent(source)), class_name, top_level=False)


@functools.lru_cache(maxsize=32)
def _parse(source: str) -> ast.Module:
    return ast.parse(source)


def _class_docstrings(tree: ast.Module, class_name: str, top_level: bool = True) -> dict[str, str]:
    nodes = tree.body if top_level else ast.walk(tree)
    cls = next((n for n in nodes if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        return {}
    body = cls.body
    docs: dict[str, str] = {}
    for stmt, following in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _model_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The docstrings of `model`'s own fields, from its module's source file (read and parsed once per
    module); `inspect.getsource` when the class is not defined at a module's top level."""
    module = sys.modules.get(model.__module__)
    path = getattr(module, "__file__", None)
    if path and "." not in model.__qualname__:
        tree = _parse("".join(linecache.getlines(path, module.__dict__)))
        docs = _class_docstrings(tree, model.__name__)
        if docs:
            return docs
    return attribute_docstrings(inspect.getsource(model), model.__name__)


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names, at any depth (`list[Chunk] | None` -> `[Chunk]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def describe(model: M) -> M:
    """Give each field of `model` (and of the models its fields name) without a `description` the
    docstring below it, read from the source of the marked class that declares it; once per model."""
    _describe(model, set())
    return model


def _describe(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    if model not in _DESCRIBED and any(c in _MARKED for c in model.__mro__):
        docs: dict[str, str] = {}
        for cls in reversed(model.__mro__):  # a subclass's docstring wins over its parent's
            if cls in _MARKED:
                docs.update(_model_docstrings(cls))
        changed = False
        for name, field in model.model_fields.items():
            if field.description is None and name in docs:
                field.description = docs[name]
                changed = True
        _DESCRIBED.add(model)
        if changed and model.__pydantic_complete__:
            _STALE.add(model)
    for field in model.model_fields.values():
        for nested in _nested_models(field.annotation):
            _describe(nested, seen)


def _rebuild_stale(model: type[BaseModel], seen: set[type[BaseModel]]) -> bool:
    """Rebuild, nested models first, the schemas built before their descriptions; True if any was."""
    if model in seen:
        return False
    seen.add(model)
    rebuilt = False
    for field in model.model_fields.values():
        for nested in _nested_models(field.annotation):
            rebuilt |= _rebuild_stale(nested, seen)
    if model in _STALE or (rebuilt and model.__pydantic_complete__):
        _STALE.discard(model)
        model.model_rebuild(force=True)
        rebuilt = True
    return rebuilt


def field_docstrings(model: M) -> M:
    """Class decorator: mark `model` so that each of its fields without a `description` gets the
    docstring below it when first asked for (`describe`, `model_json_schema`): what
    `use_attribute_docstrings=True` does, without reading any source at import."""
    _MARKED.add(model)
    if "model_json_schema" not in model.__dict__:
        parent = model

        def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
            describe(cls)
            _rebuild_stale(cls, set())
            return super(parent, cls).model_json_schema(*args, **kwargs)  # type: ignore[misc]

        model.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign]
    return model
