"""The verified canary with the real vLLM (slow): champion and challenger adapters served side by side by
one `vllm serve` of the canary's rendered arguments, the weight moved when the challenger passes, and not
moved (the folder rolled back) when its adapter is broken. Two server starts in this file, no more.

Needs the serving environment (`make vllm`) and a CPU vLLM can run on; skipped otherwise, naming why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from llmops.deploy import vllm_serve

pytestmark = pytest.mark.slow
NAME = "llmops-assistant"


@pytest.fixture(scope="module")
def adapters(data_root):
    """The project's tiny base (head_dim 64, which vLLM's CPU attention supports) and three adapters on
    it: the champion, a challenger (another random LoRA) and a broken challenger (weights not loadable)."""
    reason = vllm_serve.cpu_unsupported()
    if reason:
        pytest.skip(f"vLLM's CPU build cannot run here: {reason}")
    if vllm_serve.serving_python() is None:
        pytest.skip(f"no serving environment at {vllm_serve.venv_dir()}: run `make vllm` (make test does)")
    from llmops.deploy.smoke import make_lora_adapter
    from llmops.dev.base_model import build_base_model

    root = data_root / "canary-tests"
    shutil.rmtree(root, ignore_errors=True)
    base = build_base_model(root / "tiny-llama", pretrain_steps=0)
    champion = make_lora_adapter(str(base), root / "champion" / "adapter", seed=0)
    challenger = make_lora_adapter(str(base), root / "challenger" / "adapter", seed=1)
    broken = make_lora_adapter(str(base), root / "broken" / "adapter", seed=2)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    return {"base": base, "champion": champion, "challenger": challenger, "broken": broken, "root": root}


def _render(challenger: Path, champion: Path, out: Path, tmp_path: Path) -> str:
    from llmops.cli import main

    summary = tmp_path / "render.json"
    assert main(["render", "--model-uri", str(challenger), "--config", "examples/local/deploy.yaml", "--out", str(out),
                 "--set", "canary.enabled=true", "--set", f"canary.stable_model_uri={champion}",
                 "--set", "canary.weight=25", "--set", "route.gateway=llmops-gateway",
                 "--summary-json", str(summary)]) == 0
    return json.loads(summary.read_text())["manifests_uri"]


def _traffic(tmp_path: Path) -> Path:
    from llmops.dataset.build import prompt_for

    questions = ["What is the default port of the Larkspur Beacon service?", "Which team owns Larkspur Relay?",
                 "How often does Larkspur Ledger rotate its keys?", "What does the Beacon health check return?"]
    rows = [{"timestamp": f"2026-11-27T10:0{i}:00Z", "prompt": prompt_for(q), "request_id": f"r{i}"}
            for i, q in enumerate(questions)]
    rows.append({"timestamp": "2026-11-27T10:09:00Z", "request_id": "chat",
                 "messages": [{"role": "user", "content": questions[0]}]})
    folder = tmp_path / "traffic"
    folder.mkdir()
    (folder / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _weights(folder: str) -> list[int]:
    route = yaml.safe_load((Path(folder) / "httproute.yaml").read_text().split("\n", 2)[2])
    return [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]


def test_two_adapters_side_by_side_move_the_weight(adapters, tmp_path, capsys):
    from llmops.cli import main
    from llmops.deploy.publish import deploy_folder

    folder = _render(adapters["challenger"], adapters["champion"], tmp_path / "gitops", tmp_path)
    assert _weights(folder) == [100, 0], "rendered at weight 0 until verified"
    out = tmp_path / "verify.json"
    code = main(["canary", "verify", "--manifests", folder, "--mode", "local", "--traffic", str(_traffic(tmp_path)),
                 "--prompts", "5", "--max-tokens", "8", "--summary-json", str(out)])
    s = json.loads(out.read_text())
    assert code == 0, (capsys.readouterr().err, s.get("reason"))
    assert s["passed"] and s["moved"] and s["weight"] == 25 and _weights(folder) == [75, 25]
    command = s["check"]["command"]
    modules = command[command.index("--lora-modules") + 1:command.index("--lora-modules") + 3]
    assert [m.split("=")[0] for m in modules] == [NAME, f"{NAME}-champion"]
    assert s["stats"]["prompts"] == 5 and s["stats"]["challenger_errors"] == s["stats"]["champion_errors"] == 0
    answers = s["check"]["answers"]
    assert answers[0]["id"] == "chat" and all(a["challenger"]["status"] == 200 for a in answers)
    assert all(a["challenger"]["model"] == NAME and a["champion"]["model"] == f"{NAME}-champion" for a in answers)
    # Two different random adapters: they do not answer alike, so each request reached its own adapter.
    assert any(a["challenger"]["text"] != a["champion"]["text"] for a in answers), answers
    # The overhead figures of the report (printed, not asserted: a loaded machine varies a lot).
    lat = {k: s["stats"][f"{k}_median_latency_s"] for k in ("champion", "challenger")}
    print(f"canary side-by-side: startup {s['check']['startup_s']} s, median latency {lat}")
    assert deploy_folder(folder)["canary_weight"] == 25, "the verified weight is accepted by llmops deploy"


def test_a_broken_challenger_does_not_move_the_weight(adapters, tmp_path, capsys):
    from llmops.cli import main
    from llmops.deploy.config import load_config
    from llmops.deploy.model import served_model
    from llmops.deploy.render import render
    from llmops.settings import load_settings

    folder = _render(adapters["broken"], adapters["champion"], tmp_path / "gitops", tmp_path)
    out = tmp_path / "verify.json"
    code = main(["canary", "verify", "--manifests", folder, "--mode", "local", "--traffic", str(_traffic(tmp_path)),
                 "--prompts", "3", "--max-tokens", "4", "--summary-json", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "canary rejected, weight not moved" in err and "vLLM did not start" in err
    s = json.loads(out.read_text())
    assert not s["passed"] and not s["moved"]
    record = json.loads((Path(folder) / "canary-verification.json").read_text())
    assert record["passed"] is False and "vLLM did not start" in record["reason"]
    # The folder holds the champion's own manifests, byte for byte.
    settings = load_settings()
    config = load_config("examples/local/deploy.yaml", settings, **{"route.gateway": "llmops-gateway"})
    stable_only = render(served_model(str(adapters["champion"])), config).files
    assert {p.name: p.read_text() for p in Path(folder).iterdir() if p.suffix == ".yaml"} == stable_only
