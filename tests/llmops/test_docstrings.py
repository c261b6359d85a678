"""`field_docstrings` gives the same descriptions as pydantic's `use_attribute_docstrings`."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from llmops.docstrings import attribute_docstrings, describe, field_docstrings


class _Pydantic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    plain: int = 1
    """One line."""

    multi: str = "x"
    """First line,
    second line indented like the code.

        an indented block stays indented."""

    explicit: int = Field(default=0, description="given explicitly")
    """Ignored: an explicit description wins."""

    undocumented: int = 2

    after_blank: int = 3

    """Not right below the field: not its docstring."""


@field_docstrings
class _Ours(BaseModel):
    plain: int = 1
    """One line."""

    multi: str = "x"
    """First line,
    second line indented like the code.

        an indented block stays indented."""

    explicit: int = Field(default=0, description="given explicitly")
    """Ignored: an explicit description wins."""

    undocumented: int = 2

    after_blank: int = 3

    """Not right below the field: not its docstring."""


def test_same_descriptions_and_schema_as_pydantic():
    assert _Ours.model_json_schema()["properties"] == _Pydantic.model_json_schema()["properties"]
    ours = {k: f.description for k, f in _Ours.model_fields.items()}
    theirs = {k: f.description for k, f in _Pydantic.model_fields.items()}
    assert ours == theirs
    assert ours["plain"] == "One line."
    assert ours["undocumented"] is None


def test_inherited_fields_keep_their_parent_docstrings():
    @field_docstrings
    class Child(_Ours):
        extra: bool = False
        """Only in the child."""

    describe(Child)
    assert Child.model_fields["plain"].description == "One line."
    assert Child.model_fields["extra"].description == "Only in the child."


def test_unknown_class_gives_no_docstrings():
    assert attribute_docstrings("class A:\n    x: int = 1\n    'doc'\n", "B") == {}


@pytest.mark.parametrize(
    ("module", "model"),
    [
        ("llmops.settings", "Settings"),
        ("llmops.training.config", "TrainConfig"),
        ("llmops.drift.monitor", "DriftConfig"),
        ("llmops.rag.config", "PreprocessConfig"),
        ("llmops.dev.base_model", "BaseModelSpec"),
    ],
)
def test_project_models_match_pydantic_extraction(module, model):
    """Every documented field of the project's configs got its docstring (pydantic's own extractor, run
    on the class source, is the reference)."""
    import importlib

    from pydantic._internal._docs_extraction import extract_docstrings_from_cls

    cls = describe(getattr(importlib.import_module(module), model))
    expected = extract_docstrings_from_cls(cls, use_inspect=True)
    got = {k: f.description for k, f in cls.model_fields.items() if k in expected}
    assert expected and got == expected


def test_deferred_model_builds_once_with_the_descriptions():
    @field_docstrings
    class Deferred(BaseModel):
        model_config = ConfigDict(defer_build=True)

        size: int = 1
        """How many."""

    assert not Deferred.__pydantic_complete__  # not built by the decorator
    assert Deferred.model_json_schema()["properties"]["size"]["description"] == "How many."
    assert Deferred(size=2).size == 2


def test_nothing_is_read_at_import_and_a_built_schema_is_rebuilt_with_them():
    """The decorator reads no source; `describe` fills the descriptions once asked, and a JSON schema
    built before then (a model validated first) is rebuilt with them, nested models included."""

    @field_docstrings
    class Inner(BaseModel):
        depth: int = 1
        """How deep."""

    @field_docstrings
    class Outer(BaseModel):
        inner: Inner = Inner()
        """The inner part."""

    assert Outer.model_fields["inner"].description is None
    assert Inner.model_fields["depth"].description is None
    assert Outer(inner={"depth": 2}).inner.depth == 2  # schema built without descriptions
    schema = Outer.model_json_schema()
    assert schema["properties"]["inner"]["description"] == "The inner part."
    assert schema["$defs"]["Inner"]["properties"]["depth"]["description"] == "How deep."
    assert describe(Inner).model_fields["depth"].description == "How deep."
