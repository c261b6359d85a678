"""One rule for turning pydantic's `ValidationError` into the project's `ConfigError`.

Every typed config (settings, training, preprocessing, drift, deployment, gate policy, base model) is
validated by pydantic; the user sees one `ConfigError` whose message names each bad field, its value
and what is wrong, in the same shape everywhere:

    invalid training config: lora_dropout = 1.5: Input should be less than 1; fix it in c.yaml or ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from llmops.exceptions import ConfigError


def describe_error(
    err: Any,
    *,
    show: Callable[[Any], str] = repr,
    hint: Callable[[str], str] | None = None,
    unknown: str | None = None,
    missing: str | None = None,
) -> str:
    """`field = value: message` for one pydantic error (`err` is an item of `ValidationError.errors()`).

    A whole-model check (an empty location) names its fields in its own message, which is given alone.
    Mappings, lists, and the values of unknown and missing fields are not shown. `show` renders a value; `hint(field)` is appended to the
    message (where to fix it); `unknown` and `missing` replace pydantic's message for a field the model
    does not declare and for a required field left out."""
    field = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if not field:
        return msg
    if err["type"] == "extra_forbidden" and unknown:
        msg = unknown
    elif err["type"] == "missing" and missing:
        msg = missing
    value = err.get("input")
    hidden = isinstance(value, dict | list) or err["type"] in ("missing", "extra_forbidden")
    shown = "" if hidden else f" = {show(value)}"
    return f"{field}{shown}: {msg}{hint(field) if hint else ''}"


def config_error(what: str, exc: ValidationError, **describe: Any) -> ConfigError:
    """`ConfigError("invalid {what}: <one description per error>")`; `describe` goes to `describe_error`.
    Raise it `from None`: the pydantic traceback adds nothing the message does not say."""
    return ConfigError(f"invalid {what}: " + "; ".join(describe_error(e, **describe) for e in exc.errors()))
