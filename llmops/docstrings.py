"""Field descriptions from the docstring under each field, read cheaply.

Every typed config here documents a field with a string right below it (STYLE.md, habit 4); the
descriptions feed the README tables, the CLI help and the DAG trigger forms. Pydantic's
`use_attribute_docstrings=True` reads them too, but on Python < 3.13 it finds the class source by
walking the call stack through `inspect.getmodule`, whose first call resolves the file of every loaded
module: after `import airflow.sdk` (about 1,400 modules) that cost ~150 ms per process, paid by every
DAG file that imports the settings. This decorator parses the class's own source instead.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import sys
import textwrap
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=type[BaseModel])


def attribute_docstrings(source: str, class_name: str) -> dict[str, str]:
    """`{field: docstring}` for the annotated assignments of class `class_name` in `source` that are
    directly followed by a string literal (the same rule as pydantic's `use_attribute_docstrings`)."""
    return _class_docstrings(_parse(textwrap.dedent(source)), class_name)


@functools.lru_cache(maxsize=32)
def _parse(source: str) -> ast.Module:
    return ast.parse(source)


def _class_docstrings(tree: ast.Module, class_name: str) -> dict[str, str]:
    cls = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name), None)
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


def field_docstrings(model: M) -> M:
    """Class decorator: give each field of `model` without a `description` the docstring below it, so
    its JSON schema carries them too (what `use_attribute_docstrings=True` does). A model declared with
    `defer_build=True` builds its schema once, on first use, with them; any other is rebuilt here."""
    docs = _model_docstrings(model)
    changed = False
    for name, field in model.model_fields.items():
        if field.description is None and name in docs:
            field.description = docs[name]
            changed = True
    if changed and model.__pydantic_complete__:
        model.model_rebuild(force=True)
    return model
