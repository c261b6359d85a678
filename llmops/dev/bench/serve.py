"""`llmops bench serve`: the pinned vLLM serving the tiny base + LoRA adapters on this machine.

Four servers (two with `--no-compiled`) are started one after the other, with the arguments `llmops
render` writes for the version (the deploy config, `examples/local/deploy.yaml` by default), translated for
this machine by `llmops.deploy.vllm_serve.local_server` exactly as `llmops smoke --engine vllm` does:

- `eager_one_adapter`: what the smoke test runs (`--enforce-eager` added);
- `compiled_one_adapter`: the same without `--enforce-eager` (vLLM's default, torch.compile). The CPU
  build with `--enable-lora` may not compile at all: `compilation` gives the mode vLLM settled on
  (its engine config) and quotes what its log says about it;
- `compiled_base_only`: the base alone, without LoRA and without `--enforce-eager` (where LoRA does not
  rule compilation out);
- `eager_two_adapters`: a second adapter in `--lora-modules` and `--max-loras 2`, requests alternating.

For each: start-up to `/health`, then per served name one warm-up request and `requests` completions of
`max_tokens` tokens (greedy, `ignore_eos` so that every request generates the same number of tokens):
median latency and tokens/s, median time to the first streamed token. The models are built under
`<data_root>/bench/serve` (the untrained tiny base and random rank-8 adapters: the timings, not the
answers, are the point).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

LOCAL_EXAMPLE = "examples/local/deploy.yaml"
PROMPT = "Question: Which port does Beacon listen on?\nAnswer:"


def _completion(server: Any, model: str, max_tokens: int) -> tuple[float, int]:
    from llmops.deploy.vllm_serve import ServingError

    status, data, elapsed = server.post("/v1/completions", {
        "model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True})
    if status != 200:
        raise ServingError(f"/v1/completions with model {model!r}: HTTP {status}: {str(data)[:300]}")
    return elapsed, int((data.get("usage") or {}).get("completion_tokens") or 0)


def _measure(server: Any, names: list[str], requests: int, max_tokens: int) -> dict[str, Any]:
    """Warm-up per name, then `requests` rounds over `names` (alternating when several)."""
    for name in names:
        _completion(server, name, max_tokens)
    per_name: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
    for _ in range(requests):
        for name in names:
            per_name[name].append(_completion(server, name, max_tokens))
    ttft = {n: statistics.median(server.ttft(n, PROMPT, max_tokens) or 0.0 for _ in range(3)) for n in names}
    out: dict[str, Any] = {}
    for name, samples in per_name.items():
        latency = statistics.median(s for s, _ in samples)
        tokens = statistics.median(t for _, t in samples)
        out[name] = {"latency_median_s": round(latency, 4), "completion_tokens": tokens,
                     "tokens_per_s": round(tokens / latency, 1), "ttft_median_s": round(ttft[name], 4)}
    every = [s for samples in per_name.values() for s, _ in samples]
    out["all"] = {"latency_median_s": round(statistics.median(every), 4), "requests": len(every)}
    return out


def _compilation(text: str) -> dict[str, Any]:
    """The compilation mode vLLM settled on (from its engine config line) and its messages about it."""
    mode = re.search(r"'mode': <CompilationMode\.(\w+)", text)
    notes = []
    for line in text.splitlines():
        message = re.sub(r"^.*?\] ", "", line).strip()
        if re.search(r"compil|inductor|cudagraph", message, re.I) and not message.startswith("Initializing"):
            notes.append(message[:240])
    return {"mode": mode.group(1) if mode else None, "log": list(dict.fromkeys(notes))[:6]}


def _run(python: Path, local: Any, names: list[str], log_path: Path, requests: int, max_tokens: int) -> dict:
    from llmops.deploy.vllm_serve import VllmServer

    with VllmServer(python, local, log_path) as server:
        startup = server.wait_ready()
        measured = _measure(server, names, requests, max_tokens)
    text = log_path.read_text(errors="replace")
    return {"startup_s": round(startup, 2), "args": local.args, "requests": measured,
            "compilation": _compilation(text)}


def bench_serve(config: str = LOCAL_EXAMPLE, requests: int = 10, max_tokens: int = 16,
                compiled: bool = True) -> dict[str, Any]:
    from llmops import storage
    from llmops.deploy.config import load_config
    from llmops.deploy.render import render_uri
    from llmops.deploy.smoke import make_lora_adapter
    from llmops.deploy.vllm_serve import installed_version, local_server, rendered_server, require_serving
    from llmops.dev.base_model import build_base_model
    from llmops.exceptions import ConfigError
    from llmops.settings import load_settings

    python = require_serving()
    settings = load_settings()
    if storage.is_s3(settings.storage.data_root):
        raise ConfigError(f"data_root {settings.storage.data_root}: the serve benchmark builds its models in a local folder")
    cfg = load_config(config, settings)
    if cfg.source.kind != "pvc" or not cfg.source.mirrors or storage.is_s3(cfg.source.mirrors):
        raise ConfigError(f"--config {config}: the benchmark serves local folders, so it needs source.kind pvc "
                          "mirroring the local data root (as examples/local/deploy.yaml)")
    root = Path(storage.join(settings.storage.data_root, "bench", "serve"))
    base = build_base_model(root / "tiny-llama", pretrain_steps=0)
    adapters = [make_lora_adapter(str(base), root / f"adapter-{i}" / "adapter", seed=i) for i in (1, 2)]
    rendered = rendered_server(dict(render_uri(str(adapters[0]), cfg).files))
    path_map = {cfg.source.mount_path: str(storage.local_path(cfg.source.mirrors))}
    one = local_server(rendered, path_map)
    adapter_name = next(iter(one.lora_modules))
    load_before = os.getloadavg()

    variants: dict[str, Any] = {}
    variants["eager_one_adapter"] = _run(python, one, [adapter_name, one.base_name],
                                         root / "eager-one.log", requests, max_tokens)
    if compiled:
        args = [a for a in one.args if a != "--enforce-eager"]
        no_eager = type(one)(args, dict(one.env), one.port, [*one.translated, "--enforce-eager removed"],
                             one.base_name, dict(one.lora_modules))
        variants["compiled_one_adapter"] = _run(python, no_eager, [adapter_name, one.base_name],
                                                root / "compiled-one.log", requests, max_tokens)
        # Without LoRA the CPU build may compile: what compilation costs where it happens.
        lora_flags = {"--enable-lora": 0, "--lora-modules": 1, "--max-lora-rank": 1, "--max-loras": 1}
        args, i = [], 0
        while i < len(one.args):
            if one.args[i] in lora_flags:
                i += 1 + lora_flags[one.args[i]]
            elif one.args[i] == "--enforce-eager":
                i += 1
            else:
                args.append(one.args[i])
                i += 1
        base_only = type(one)(args, dict(one.env), one.port, [*one.translated, "LoRA and --enforce-eager removed"],
                              one.base_name, {})
        variants["compiled_base_only"] = _run(python, base_only, [one.base_name], root / "compiled-base.log",
                                              requests, max_tokens)
    second = "adapter-2"
    args = list(one.args)
    args.insert(args.index(f"{adapter_name}={one.lora_modules[adapter_name]}") + 1, f"{second}={adapters[1]}")
    if "--max-loras" in args:
        args[args.index("--max-loras") + 1] = "2"
    else:
        args += ["--max-loras", "2"]
    two = type(one)(args, dict(one.env), one.port, [*one.translated, "second adapter, --max-loras 2"],
                    one.base_name, {**one.lora_modules, second: str(adapters[1])})
    variants["eager_two_adapters"] = _run(python, two, [adapter_name, second], root / "eager-two.log",
                                          requests, max_tokens)

    eager, pair = variants["eager_one_adapter"], variants["eager_two_adapters"]
    one_latency = eager["requests"][adapter_name]["latency_median_s"]
    return {
        "benchmark": "serve",
        "vllm_version": installed_version(python),
        "config": config,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "requests_per_name": requests,
        "base_model": str(base),
        "adapters": [str(a) for a in adapters],
        "variants": variants,
        "two_adapters_vs_one": {
            "startup_s": [eager["startup_s"], pair["startup_s"]],
            "latency_median_s": [one_latency, pair["requests"]["all"]["latency_median_s"]],
            "latency_ratio": round(pair["requests"]["all"]["latency_median_s"] / one_latency, 2),
        },
        "logs": str(root),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
