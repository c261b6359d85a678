"""`config_error`: one shape of message for every config's pydantic errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops.exceptions import ConfigError
from llmops.validation import config_error


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.1, gt=0, lt=1)
    name: str
    tags: list[str] = []

    @model_validator(mode="after")
    def _name_not_rate(self):
        if self.name == "rate":
            raise ValueError("name and rate must differ")
        return self


def _error(**values) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Config(**values)
    return info.value


def test_names_field_value_and_message():
    err = config_error("thing", _error(rate=1.5, name="a"))
    assert isinstance(err, ConfigError)
    assert str(err) == "invalid thing: rate = 1.5: Input should be less than 1"


def test_unknown_missing_hint_and_custom_show():
    exc = _error(rate=0.5, colour="red")
    message = str(
        config_error(
            "thing", exc, unknown="is not a known field", missing="is required", hint=lambda f: f" (fix {f})"
        )
    )
    assert "name: is required (fix name)" in message  # the missing value is not shown
    assert "colour: is not a known field (fix colour)" in message
    assert str(config_error("thing", _error(name=["x"]))).startswith("invalid thing: name: ")  # list hidden
    shown = config_error("thing", _error(rate="x", name="a"), show=lambda v: f"<{v}>")
    assert "rate = <x>:" in str(shown)


def test_whole_model_check_gives_its_own_message():
    assert str(config_error("thing", _error(name="rate"))) == "invalid thing: name and rate must differ"


def test_project_configs_use_it():
    from llmops.settings import load_settings
    from llmops.training.config import load_config

    with pytest.raises(ConfigError, match=r"invalid settings .*: no_such: is not a known setting"):
        load_settings(environ={}, no_such="x")
    with pytest.raises(ConfigError, match=r"invalid training config: lora_dropout = 1.5: .*--set lora_dropout="):
        load_config(None, {"lora_dropout": 1.5})
