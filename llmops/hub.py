"""What counts as a Hugging Face hub model id, in one place (training, registry and serving agree).

A hub id is `name` (the hub's legacy top-level models such as `gpt2`) or `org/name`; never a path
(`/`, `.`, `~` first) nor a URI (`s3://`, `models:/`, `file://`). Callers that can also be given a local
folder check the filesystem first: a bare `model` folder in the working directory is a folder.
"""

from __future__ import annotations

import re

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_hub_id(ref: str) -> bool:
    """True for `name` or `org/name` on the Hugging Face hub (not a path, not a URI)."""
    return "://" not in ref and not ref.startswith(("/", ".", "~")) and bool(HUB_ID.match(ref))
