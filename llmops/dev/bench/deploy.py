"""`llmops bench render` and `llmops bench smoke`: the serving side's figures for one version.

Without `--model-uri` both use a LoRA adapter (rank 8, attention projections) written on the tiny local
base model (the `base_model_uri` setting, built by `llmops base-model build`) under
`<data_root>/bench/deploy-adapter`, rewritten on each run.

- render: `render_uri` + validation of the version once (the first in the process: imports and caches),
  then `repeat` times more (median); fails when two renders give different files; then the time to write
  the folder and to `validate_dir` it.
- smoke: the CPU smoke test (`llmops.deploy.smoke.smoke`): load, generation, tokens/s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def bench_adapter() -> str:
    """A LoRA adapter (rank 8, attention projections) on the tiny local base model, written under
    `<data_root>/bench/deploy-adapter` (rewritten on each run)."""
    from llmops import storage
    from llmops.deploy.smoke import make_lora_adapter
    from llmops.exceptions import ModelLoadError
    from llmops.settings import load_settings

    settings = load_settings()
    base = settings.base_model
    if storage.is_s3(base) or not storage.local_path(base).is_dir():
        raise ModelLoadError(
            f"no local base model at {base}: build the tiny one with `llmops base-model build --out {base}`, "
            "or pass --model-uri"
        )
    out = Path(storage.join(settings.storage.data_root, "bench", "deploy-adapter"))
    make_lora_adapter(str(storage.local_path(base)), out)
    return str(out)


def bench_render(model_uri: str | None, config: str, repeat: int = 5) -> dict[str, Any]:
    """Time render + validate of `model_uri` (default: `bench_adapter()`) with the deploy config `config`."""
    from llmops.deploy.config import load_config
    from llmops.deploy.render import render_uri, write
    from llmops.exceptions import ManifestInvalid
    from llmops.k8s.validate import validate_dir

    uri = model_uri or bench_adapter()
    deploy_config = load_config(config)
    t0 = time.perf_counter()
    rendered = render_uri(uri, deploy_config)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(max(repeat, 1)):
        t = time.perf_counter()
        again = render_uri(uri, deploy_config)
        warm.append(time.perf_counter() - t)
        if again.files != rendered.files:
            raise ManifestInvalid(f"rendering {uri} twice gave different files: rendering is not deterministic")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-render-") as tmp:
        t = time.perf_counter()
        folder, _ = write(rendered, tmp)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        results = validate_dir(Path(folder))
        validate_s = time.perf_counter() - t
    return {
        "benchmark": "render",
        "model_uri": uri,
        "config": config,
        "files": len(rendered.files),
        "objects": len(rendered.all_objects()),
        "render_validate_cold_s": round(cold, 4),
        "render_validate_warm_median_s": round(statistics.median(warm), 4),
        "repeat": len(warm),
        "write_s": round(write_s, 4),
        "validate_dir_s": round(validate_s, 4),
        "all_valid": all(not p for p in results.values()),
        "deterministic": True,
    }


def bench_smoke(model_uri: str | None, max_new_tokens: int = 32) -> dict[str, Any]:
    """The smoke test of `model_uri` (default: `bench_adapter()`) on this machine, as figures."""
    from llmops.deploy.smoke import smoke

    uri = model_uri or bench_adapter()
    return {"benchmark": "smoke", **smoke(uri, max_new_tokens=max_new_tokens)}
