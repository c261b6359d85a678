"""`llmops bench gate`: the gate's figures on the tiny local model, with timings.

Builds the tiny base (`llmops base-model build`) and a dataset version from the sample corpus (`llmops
preprocess` + `llmops dataset build`, or `--dataset`), fine-tunes it with the example config (`llmops
train`) on the train split, then evaluates on the never-trained eval split: it runs the real step commands as the local operator would (`python -m llmops evaluate|gate`, one
subprocess each) and checks the gate's behaviour:

1. the fine-tuned adapter passes the gate against the untrained base (and the time of the whole
   evaluate candidate + evaluate champion + gate step);
2. the base never passes against the fine-tuned adapter;
3. two evaluations of the same model never pass each other (the policy requires a significant gain);
4. a candidate with a real but small gain over its champion, evaluated on too few samples, is rejected
   as "not significant". Both are the fine-tuned adapter with its LoRA update scaled down
   (`--small-gain-scales`, default 20 % for the champion and 30 % for the candidate): models between
   the base and the fine-tuned one. The pair is also gated on every sample, which shows the gain is
   real, only not demonstrable on `--small-limit` samples.

Each case prints its decision, reasons and the metric table; `--json` prints everything as JSON.
Existing artefacts in `--work` are reused (`--base`, `--adapter` point at existing ones).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmops.exceptions import EvaluationError
from llmops.resources import packaged
from llmops.settings import load_settings


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    started = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    return proc.returncode, time.monotonic() - started


def _llmops(args: list[str], env: dict[str, str], log: Path, ok: tuple[int, ...] = (0,)) -> float:
    code, seconds = _run([sys.executable, "-m", "llmops", *args], env, log)
    if code not in ok:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise EvaluationError(f"llmops {' '.join(args[:2])} exited {code} (log {log}):\n{tail}")
    return seconds


def _scaled_adapter(adapter: Path, out: Path, scale: float) -> Path:
    """A copy of `adapter` whose LoRA update is multiplied by `scale` (the B factor of every LoRA pair:
    `lora_B` of linear layers, `lora_embedding_B` of embeddings; the update is B @ A, linear in B)."""
    from safetensors.torch import load_file, save_file

    if (out / "adapter_config.json").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(adapter, tmp)
    weights = tmp / "adapter_model.safetensors"
    if not weights.exists():
        raise EvaluationError(f"{adapter} has no adapter_model.safetensors to scale")
    tensors = load_file(str(weights))
    scaled = {k: (v * scale if ("lora_B" in k or "lora_embedding_B" in k) else v) for k, v in tensors.items()}
    if not any("lora_B" in k or "lora_embedding_B" in k for k in tensors):
        raise EvaluationError(f"{adapter} holds no LoRA B weights to scale (not a LoRA adapter?)")
    save_file(scaled, str(weights), metadata={"format": "pt"})
    tmp.rename(out)
    return out


def _case(name: str, expected: str, report_path: Path, code: int) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    decision = report["decision"]
    return {
        "case": name,
        "expected": expected,
        "decision": decision,
        "exit_code": code,
        "as_expected": decision == expected,
        "reasons": report["reasons"],
        "metrics": {
            f"{m['task']}/{m['metric']}": {
                "candidate": m["candidate"],
                "champion": m["champion"],
                "difference": m["difference"],
                "ci": [m["ci_low"], m["ci_high"]],
                "p_value_holm": m["p_value_holm"],
                "n": m["n"],
                "verdict": m["verdict"],
            }
            for m in report["metrics"]
        },
        "report": str(report_path),
    }


def _sample_dataset(work: Path, env: dict[str, str], logs: Path, say) -> str:
    """The sample corpus (release 1), preprocessed (Spark local) and built into a dataset version under
    `work`; reused when present. Returns its `dataset_uri`."""
    datasets = work / "datasets"
    latest = datasets / "latest.json"
    if not latest.exists():
        say(f"building the sample dataset in {datasets} (sample corpus, preprocessing, dataset build)")
        _llmops(["sample-data", "--out", str(work / "sample"), "--release", "1"], env, logs / "sample-data.log")
        _llmops(["preprocess", "--input", str(work / "sample" / "corpus"), "--output", str(work / "processed")],
                env, logs / "preprocess.log")
        _llmops(["dataset", "build", "--corpus", str(work / "processed"), "--out", str(datasets)], env,
                logs / "dataset.log")
    return str(json.loads(latest.read_text())["dataset_uri"])


def run_bench(args: argparse.Namespace) -> int:
    from llmops.cli import print_json

    s = load_settings()
    work = Path(args.work or Path(s.storage.data_root) / "bench" / "gate").resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    policy = args.policy or str(packaged("examples/local/gate.yaml"))
    train_config = args.train_config or str(packaged("examples/local/finetune.yaml"))
    if not args.train_config and not Path(train_config).exists():
        train_config = None  # llmops train's built-in defaults are tuned for the tiny model
    env = {
        **os.environ,
        "LLMOPS_DATA_ROOT": str(work / "data"),
        "LLMOPS_MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "LLMOPS_MLFLOW_ARTIFACTS_URI": str(work / "mlflow-artifacts"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    timings: dict[str, float] = {}
    figures: dict[str, Any] = {"work": str(work), "policy": policy}

    def say(msg: str) -> None:
        if not args.json:
            print(msg, flush=True)

    # 1. the tiny base and the fine-tuned adapter (real commands, reused when present)
    base = Path(args.base) if args.base else work / "base"
    if not (base / "config.json").exists():
        say(f"building the tiny base model in {base}")
        timings["base_model_build_s"] = round(
            _llmops(["base-model", "build", "--out", str(base)], env, logs / "base.log"), 2
        )
    dataset = args.dataset or _sample_dataset(work, env, logs, say)
    figures["dataset"] = dataset
    adapter = Path(args.adapter) if args.adapter else work / "train" / "adapter"
    if not (adapter / "adapter_config.json").exists():
        say(f"fine-tuning ({train_config or 'default config'}) into {adapter.parent}")
        cmd = ["train", "--output-dir", str(adapter.parent), "--set", f"base_model={base}",
               "--set", f"dataset={dataset}"]
        cmd += ["--config", train_config] if train_config else []
        timings["train_s"] = round(_llmops(cmd, env, logs / "train.log"), 2)
    low, high = args.small_gain_scales
    weak_champion = _scaled_adapter(adapter, work / f"scaled-adapter-{low:g}", low)
    weak_candidate = _scaled_adapter(adapter, work / f"scaled-adapter-{high:g}", high)
    figures.update(base=str(base), adapter=str(adapter), small_gain_champion=str(weak_champion),
                   small_gain_candidate=str(weak_candidate))

    evals = work / "eval"

    def evaluate(name: str, model: Path, limit: int | None = None, mlflow: bool = False) -> float:
        out = evals / name
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["evaluate", "--model", str(model), "--dataset", dataset, "--output", str(out)]
        cmd += ["--limit", str(limit)] if limit else []
        cmd += [] if mlflow else ["--no-mlflow"]
        say(f"evaluating {name}")
        seconds = _llmops(cmd, env, logs / f"eval-{name}.log")
        timings[f"evaluate_{name}_s"] = round(seconds, 2)
        return seconds

    def gate(name: str, candidate: str, baseline: str, expected: str) -> dict[str, Any]:
        report = work / "reports" / f"{name}.json"
        code, seconds = _run(
            [sys.executable, "-m", "llmops", "gate", "--candidate", str(evals / candidate), "--baseline",
             str(evals / baseline), "--policy", policy, "--report", str(report)],
            env,
            logs / f"gate-{name}.log",
        )
        if code not in (0, 3):
            raise EvaluationError(f"llmops gate exited {code}: see {logs / f'gate-{name}.log'}")
        timings[f"gate_{name}_s"] = round(seconds, 2)
        case = _case(name, expected, report, code)
        say(f"{name}: {case['decision']} (expected {expected})\n  " + "\n  ".join(case["reasons"]))
        return case

    # The step as the fine-tune DAG runs it: evaluate candidate, evaluate champion, gate (with MLflow).
    t_cand = evaluate("adapter", adapter, mlflow=True)
    t_champ = evaluate("base", base, mlflow=True)
    cases = [gate("finetuned_vs_base", "adapter", "base", "promote")]
    timings["evaluate_and_gate_step_s"] = round(t_cand + t_champ + timings["gate_finetuned_vs_base_s"], 2)
    cases.append(gate("base_vs_finetuned", "base", "adapter", "reject"))
    evaluate("base_again", base)
    evaluate("adapter_again", adapter)
    cases.append(gate("base_vs_itself", "base_again", "base", "reject"))
    cases.append(gate("finetuned_vs_itself", "adapter_again", "adapter", "reject"))
    evaluate("scaled_low", weak_champion)
    evaluate("scaled_high", weak_candidate)
    full = gate("small_gain_all_samples", "scaled_high", "scaled_low", "promote")
    full["note"] = "the same pair on every sample: shows that the small gain is real"
    cases.append(full)
    evaluate("scaled_low_few", weak_champion, limit=args.small_limit)
    evaluate("scaled_high_few", weak_candidate, limit=args.small_limit)
    small = gate("small_gain_few_samples", "scaled_high_few", "scaled_low_few", "reject")
    small["not_significant_reason"] = any(r.startswith("not significant") for r in small["reasons"])
    cases.append(small)

    figures.update(
        {
            "cases": cases,
            "timings": timings,
            "all_as_expected": all(c["as_expected"] for c in cases) and small["not_significant_reason"],
        }
    )
    if args.json:
        print_json(figures)
    else:
        print(json.dumps({"timings": timings, "all_as_expected": figures["all_as_expected"]}, indent=2))
    return 0
