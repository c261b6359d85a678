"""Smoke test of a model version on CPU: serve it the way the manifests say and answer one prompt.

Engine `vllm` (`llmops.deploy.vllm_serve`): the version's manifests are rendered (or read from
`--manifests`), the pinned vLLM runs the rendered container arguments here (translated only where CPU
must differ), and a client checks `/v1/models`, `/v1/completions`, `/v1/chat/completions` and `/metrics`
under the served names. It needs the serving environment (`make vllm`).

Engine `transformers`, the fallback: the base model loaded with transformers, the PEFT adapter applied,
greedy generation. It proves the weights load, not that vLLM serves them; `auto` (the default) uses it
only when the serving environment is absent or the CPU cannot run vLLM, and the summary says so
(`engine`, `fallback_reason`). Both report what a user waits for: start-up/load time, latency, tokens/s.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.contracts import SmokeSummary
from llmops.deploy.model import ServedModel, is_hub_id, served_model
from llmops.exceptions import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt")


# The first sample fact's question (`llmops.dev.sample_data`, which the images do not ship), so the demo's
# model knows the answer; tests/llmops/dev/test_sample_data.py keeps the two equal.
DEFAULT_QUESTION = "What is the default port of the Larkspur Beacon service?"


def default_prompt() -> str:
    """`DEFAULT_QUESTION` in the fine-tuning prompt format."""
    from llmops.dataset.build import prompt_for

    return prompt_for(DEFAULT_QUESTION)


def _local(location: str, tmp: Path, role: str) -> str:
    """A local folder for a path or an `s3://` folder (downloaded); hub ids are passed through."""
    if storage.is_s3(location):
        return str(storage.download_dir(location, tmp / role))
    if is_hub_id(location) and not Path(location).exists():
        return location
    path = storage.local_path(location)
    if not path.exists():
        raise ModelLoadError(f"{role} folder {location} does not exist")
    return str(path)


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / f).exists() for f in TOKENIZER_FILES)


def load(served: ServedModel, tmp: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, facts about what was loaded) for a served model, on CPU in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops.embedding import torch_threads

    torch.set_num_threads(torch_threads())
    base = _local(str(served.base if served.is_adapter else served.model), tmp, "base")
    adapter = _local(str(served.adapter), tmp, "adapter") if served.is_adapter else None
    tok_source = adapter if adapter and _has_tokenizer(adapter) else base
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_source)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the base model {base}: {exc}") from None
    info: dict[str, Any] = {"base": base, "adapter": adapter, "parameters": sum(p.numel() for p in model.parameters())}
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot apply the adapter {adapter} to {base}: {exc}") from None
        info["lora_modules"] = sum(1 for name, _ in model.named_modules() if name.endswith("lora_A"))
    model.eval()
    return model, tokenizer, info


ENGINES = ("auto", "vllm", "transformers")


def smoke(
    model_uri: str,
    prompt: str | None = None,
    max_new_tokens: int = 32,
    engine: str = "transformers",
    manifests: str | None = None,
    config: str | None = None,
    expect: str | None = None,
) -> dict[str, Any]:
    """Serve the version with `engine` (`auto`, `vllm`, `transformers`) and answer `prompt` greedily.

    `manifests`: a folder written by `llmops render` (default: render `model_uri` with `config`, the
    `settings.deploy_config` when None). `expect`: text the answer must contain."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    fallback = None
    if engine == "auto":
        from llmops.deploy.vllm_serve import cpu_unsupported, serving_python, venv_dir

        if serving_python() is None:
            fallback = f"no serving environment at {venv_dir()} (create it with `make vllm`)"
        else:
            fallback = cpu_unsupported()
        engine = "transformers" if fallback else "vllm"
        if fallback:
            log.warning("smoke test with transformers, not vLLM: %s", fallback)
    if engine == "vllm":
        return SmokeSummary.model_validate(smoke_vllm(model_uri, prompt, max_new_tokens, manifests, config,
                                                      expect)).to_json()
    summary = smoke_transformers(model_uri, prompt, max_new_tokens)
    summary["engine"] = "transformers"
    if fallback:
        summary["fallback_reason"] = f"transformers fallback, vLLM not run: {fallback}"
    if expect is not None and expect.strip() not in summary["answer"]:
        raise ModelLoadError(f"{model_uri} answered {summary['answer']!r}, expected {expect.strip()!r}")
    return SmokeSummary.model_validate(summary).to_json()


def _identity(model_uri: str, served: ServedModel) -> dict[str, Any]:
    """The head of a smoke summary, whatever the engine: the version asked for and what it resolved to."""
    return {
        "model_uri": model_uri,
        "name": served.name,
        "version": served.version,
        "run_id": served.run_id,
        "adapter": served.is_adapter,
    }


def smoke_vllm(
    model_uri: str,
    prompt: str | None,
    max_new_tokens: int,
    manifests: str | None,
    config: str | None,
    expect: str | None,
) -> dict[str, Any]:
    """The version served by the pinned vLLM with its rendered arguments (`llmops.deploy.vllm_serve`)."""
    from llmops.deploy.config import load_config
    from llmops.deploy.render import model_source, render_uri
    from llmops.deploy.vllm_serve import read_folder, require_serving, serve_and_check
    from llmops.settings import load_settings

    require_serving()
    served = served_model(model_uri)
    prompt = prompt or default_prompt()
    settings = load_settings()
    cfg = load_config(config or settings.deploy_config, settings)
    with tempfile.TemporaryDirectory(prefix="llmops-smoke-") as tmp:
        if manifests:
            files = read_folder(manifests)
        else:
            files = dict(render_uri(model_uri, cfg).files)
        # The pod's weight paths -> the local folders (downloaded when on s3://) they are copies of.
        source = model_source(cfg, served)
        path_map = {}
        if served.is_adapter:
            path_map[source.serve] = _local(str(served.base), Path(tmp), "base")
            path_map[str(source.lora)] = _local(str(served.adapter), Path(tmp), "adapter")
        else:
            path_map[source.serve] = _local(str(served.model), Path(tmp), "model")
        if cfg.source.kind == "pvc" and cfg.source.mirrors and not storage.is_s3(cfg.source.mirrors):
            path_map.setdefault(cfg.source.mount_path, str(storage.local_path(cfg.source.mirrors)))
        summary = serve_and_check(files, path_map, prompt, max_new_tokens, expect)
    return {
        **_identity(model_uri, served),
        "generate_s": summary["latency_s"],
        **summary,
    }


def smoke_transformers(model_uri: str, prompt: str | None = None, max_new_tokens: int = 32) -> dict[str, Any]:
    """Load the version, answer `prompt` greedily, and time both; fails when nothing is generated."""
    import torch

    served = served_model(model_uri)
    prompt = prompt or default_prompt()
    with tempfile.TemporaryDirectory(prefix="llmops-smoke-") as tmp:
        t0 = time.perf_counter()
        model, tokenizer, info = load(served, Path(tmp))
        load_s = time.perf_counter() - t0
        encoded = tokenizer(prompt, return_tensors="pt")
        # Only what a causal LM takes (a BERT-style tokenizer also returns token_type_ids).
        inputs = {k: encoded[k] for k in ("input_ids", "attention_mask") if k in encoded}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        generate_s = time.perf_counter() - t1
    new_tokens = out[0, inputs["input_ids"].shape[1]:]
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
    n = int(new_tokens.shape[0])
    if n == 0:
        raise ModelLoadError(f"{model_uri} loaded but generated no token for the prompt {prompt!r}")
    return {
        **_identity(model_uri, served),
        "lora_modules": info.get("lora_modules", 0),
        "parameters": info["parameters"],
        "prompt": prompt,
        "answer": answer,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": n,
        "load_s": round(load_s, 4),
        "generate_s": round(generate_s, 4),
        "tokens_per_s": round(n / generate_s, 2) if generate_s > 0 else None,
    }


def make_lora_adapter(base: str, out: Path, rank: int = 8, seed: int = 0) -> Path:
    """Save a LoRA adapter for `base` without training (random B, so it changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out))
    return out
