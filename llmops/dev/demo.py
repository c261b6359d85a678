"""`make demo`: the whole lifecycle on this machine, through the real Airflow scheduler.

1. Builds the tiny base model and lands release 1 of the sample corpus (the fictional product Larkspur).
2. Starts Airflow in local mode (`airflow standalone`, SQLite under `.airflow/`) and triggers the landing
   sensor; from there the assets chain the DAGs: the sensor's `llmops_landing` event starts preprocessing
   (Spark `local[*]`, Milvus Lite), its `llmops_corpus` event the dataset DAG (items generated from the
   chunks, split by item into train and eval), its `llmops_dataset` event the fine-tune DAG (train,
   evaluate on the never-trained eval items, gate, register, promote, manifests, smoke test, deploy): v1.
   The base model is evaluated on the same held-out items: how much v1 learnt, with its p-value.
3. Lands release 2 (documents for new components): incremental index, incremental dataset (only the new
   chunks generate items), retrain, and the gate: significantly better on the `new` slice (items from
   the new documents), not significantly worse on `retained`: v2 becomes champion, with its manifests.
4. Replays inference traffic and triggers the drift DAG three times: in-domain traffic (no drift, no
   retrain); out-of-domain traffic (drift: a `llmops_retrain` event, the dataset DAG rebuilds, steered by
   the drift report, and the fine-tune DAG skips "no new data since v2"); out-of-domain again (the
   cooldown holds).
5. Prints a summary table and where to look (Airflow and MLflow UIs).

The demo owns the default data folder: it starts from a clean `.llmops/` (the model cache is kept) and a
clean `.airflow/`. Its schedules are off (`none`) while it runs, so that only the runs it starts happen;
`make airflow` runs the same DAGs on their schedules. This module drives Airflow over its REST API and
never imports it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmops.airflow_local import PROJECT_ROOT, AirflowError, LocalAirflow, airflow_env
from llmops.settings import Settings, load_settings
from llmops.training.inputs import run_key

DAGS = ["llmops_data_sensor", "llmops_preprocess", "llmops_dataset", "llmops_finetune", "llmops_drift"]
HELD_OUT_POLICY = """# v1 against the untrained base on the dataset's eval items (never trained on): the figure to report.
bootstrap_iterations: 10000
metrics:
  - {task: corpus_mc, metric: acc}
  - {task: corpus_qa, metric: exact_match}
  - {task: corpus_qa, metric: rougeL}
"""
DEMO_ENV = {
    # Only the runs the demo starts: no cron runs in between (the asset-triggered ones still chain).
    "LLMOPS_LANDING_SCHEDULE": "none",
    "LLMOPS_DRIFT_SCHEDULE": "none",
    "LLMOPS_RETRAIN_SCHEDULE": "none",
    "LLMOPS_LANDING_POKE_INTERVAL_S": "5",
    # 8 passes over the dataset's train rows (~400 steps for release 1, ~460 for release 2): the tiny
    # model learns the items in about the time the recipe's 15 epochs over the old 432-row file took.
    "LLMOPS_TRAIN_DEFAULTS": '{"epochs": 8}',
}
KEEP = {"cache"}
"""Sub-folders of the data root the clean start keeps (downloaded models)."""
SERVING_INSTALL_ENV = "LLMOPS_DEMO_VLLM_INSTALL_LOG"
"""Set by `make demo`, which runs `make vllm` in the background: its log. `install.done` or `install.failed`
appears beside it when that install ends; the demo waits for one before the first fine-tune run."""
SERVING_INSTALL_TIMEOUT_S = 1200.0


class DemoError(RuntimeError):
    """A demo step did not end as expected; the message says where to look."""


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.root = Path(settings.storage.data_root)
        self.logs = self.root / "demo"
        self.port = port
        self.airflow = LocalAirflow(home=PROJECT_ROOT / ".airflow", port=port, extra_env=DEMO_ENV)
        self.rows: list[tuple[str, str]] = []
        self.serving_expected = False
        self.started = time.monotonic()

    # --- helpers -----------------------------------------------------------------------------------

    def elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60:d}:{s % 60:02d}"

    def step(self, text: str) -> None:
        say(f"[{self.elapsed()}] {text}")

    def llmops(self, name: str, *args: str) -> dict[str, Any]:
        """Run an `llmops` step as a subprocess (as a pod would), its output in `.llmops/demo/<name>.log`;
        return its summary JSON."""
        self.logs.mkdir(parents=True, exist_ok=True)
        summary = self.logs / f"{name}.json"
        log = self.logs / f"{name}.log"
        cmd = [sys.executable, "-m", "llmops", *args, "--summary-json", str(summary)]
        env = airflow_env(PROJECT_ROOT / ".airflow", self.port, DEMO_ENV)
        with log.open("w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT).returncode
        if rc != 0:
            raise DemoError(f"`llmops {' '.join(args)}` exited with {rc}:\n{_tail(log)}")
        return json.loads(summary.read_text())

    def run_dag(self, dag_id: str, run_id: str | None = None, after: int = 0, timeout: float = 900) -> dict:
        """Wait for a run (by id, or the DAG's (after+1)-th run) and fail with the failed task's log."""
        run = self.airflow.wait_for_run(dag_id, run_id=run_id, after=after, timeout=timeout)
        states = self.airflow.task_states(dag_id, run["dag_run_id"])
        run["task_states"] = states
        if run["state"] != "success":
            failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
            logs = "\n".join(self.task_log(dag_id, run["dag_run_id"], t) for t in failed[:1])
            raise DemoError(f"{dag_id} run {run['dag_run_id']} ended {run['state']} (tasks {states})\n{logs}")
        return run

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        folder = PROJECT_ROOT / ".airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        logs = sorted(folder.glob("attempt=*.log"))
        return f"{logs[-1]}:\n{_tail(logs[-1])}" if logs else f"(no log under {folder})"

    def xcom(self, dag_id: str, run: dict, task_id: str) -> Any:
        return self.airflow.xcom(dag_id, run["dag_run_id"], task_id)

    def row(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    # --- the story ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.step("clean start: .llmops/ (model cache kept) and .airflow/")
        if self.root.exists():
            for child in self.root.iterdir():
                if child.name not in KEEP:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.rmtree(PROJECT_ROOT / ".airflow", ignore_errors=True)

        base = self.llmops("base-model", "base-model", "build", "--out", self.settings.base_model)
        self.step(f"tiny base model: {base.get('parameters', '?')} parameters, vocabulary {base.get('vocab_size')} "
                  f"-> {self.settings.base_model}")
        sample = self.llmops("sample-data", "sample-data", "--out", str(self.root / "sample"), "--release", "1",
                             "--landing", self.settings.landing)
        self.step(f"sample data release 1: {_count(sample, 'documents')} documents landed in {self.settings.landing}")

    def start_airflow(self) -> None:
        self.step(f"starting Airflow (scheduler, dag-processor, triggerer, API server on port {self.port}); "
                  f"log: .airflow/standalone.log")
        self.airflow.start()
        self.airflow.wait_for_dags(DAGS)
        self.step("Airflow is up; DAGs parsed: " + ", ".join(DAGS))

    def land_and_index(self, release: int) -> dict[str, Any]:
        """Trigger the sensor; wait for preprocessing and the dataset build its events start."""
        before = {d: len(self.airflow.runs(d)) for d in ("llmops_data_sensor", "llmops_preprocess", "llmops_dataset")}
        sensor_id = self.airflow.trigger("llmops_data_sensor")
        self.step(f"release {release}: triggered llmops_data_sensor ({sensor_id}); the assets chain the rest")
        sensor = self.run_dag("llmops_data_sensor", run_id=sensor_id, timeout=300)
        if sensor["task_states"].get("detect_changes") != "success":
            raise DemoError(f"the sensor found no new documents: {sensor['task_states']}")
        pre = self.run_dag("llmops_preprocess", after=before["llmops_preprocess"], timeout=900)
        summary = self.xcom("llmops_preprocess", pre, "preprocess") or {}
        self.step(f"preprocess ({pre['run_type']}): {summary.get('documents_indexed')} documents indexed, "
                  f"{summary.get('chunks_total')} chunks in the snapshot -> llmops_corpus event")
        self.row(f"index (release {release})",
                 f"{summary.get('chunks_total')} chunks; {summary.get('documents_indexed')} documents (re)indexed, "
                 f"{summary.get('duplicates_removed')} duplicates removed; snapshot {summary.get('snapshot_id')}")
        ds_run = self.run_dag("llmops_dataset", after=before["llmops_dataset"], timeout=600)
        ds = self.xcom("llmops_dataset", ds_run, "build") or {}
        self.step(f"dataset ({ds_run['run_type']}): {ds.get('dataset_hash')}, {ds.get('items_generated')} items "
                  f"generated, {ds.get('items_reused')} reused -> llmops_dataset event")
        self.row(f"dataset (release {release})", _dataset_row(ds))
        return {"preprocess": summary, "dataset": ds}

    def finetune(self, label: str, after: int) -> dict[str, Any]:
        """Wait for the fine-tune run started by the dataset event; record what it did."""
        run = self.run_dag("llmops_finetune", after=after, timeout=1500)
        trigger = self.xcom("llmops_finetune", run, "check_trigger") or {}
        train = self.xcom("llmops_finetune", run, "train") or {}
        promote = self.xcom("llmops_finetune", run, "promote") or {}
        gate = self.gate_report(run)
        self.step(f"fine-tune ({trigger.get('trigger')} trigger, dataset {trigger.get('dataset_hash')}): gate "
                  f"{gate['decision']}" + (f", version {promote.get('version')} is champion" if promote else ""))
        self.row(f"adapter {label}", f"{train.get('adapter_dir')} ({train.get('steps')} steps on "
                                     f"{train.get('rows')} rows, eval loss {_num(train.get('eval_loss'))}, "
                                     f"{_num(train.get('tokens_per_s'), 0)} tokens/s)")
        self.row(f"gate {label}", f"{gate['decision']}: {gate['headline']}")
        if promote:
            rendered = self.xcom("llmops_finetune", run, "render_manifests") or {}
            deploy = self.xcom("llmops_finetune", run, "deploy") or {}
            self.row(f"model {label}", f"{promote.get('registered_model_name')} v{promote.get('version')}, alias "
                                       f"{', '.join(promote.get('aliases') or ['champion'])}; manifests "
                                       f"{rendered.get('manifests_uri')} ({len(rendered.get('files') or [])} files, "
                                       f"validated; live version {deploy.get('live')})")
        return {"run": run, "promote": promote, "gate": gate}

    def wait_for_serving(self) -> None:
        """When `make demo` installs the serving environment in the background, wait for that install to end
        (before the first fine-tune run: its smoke test serves with vLLM when the environment exists)."""
        from llmops.settings import process_settings

        log = process_settings().demo_vllm_install_log
        if not log:
            return
        done, failed = Path(log).with_name("install.done"), Path(log).with_name("install.failed")
        t0 = time.monotonic()
        if not (done.exists() or failed.exists()):
            self.step(f"waiting for the serving environment (make vllm, in the background; log: {log})")
        while not (done.exists() or failed.exists()):
            if time.monotonic() - t0 > SERVING_INSTALL_TIMEOUT_S:
                raise DemoError(f"make vllm did not end within {SERVING_INSTALL_TIMEOUT_S:.0f} s; its log, {log}:\n"
                                f"{_tail(Path(log), 15)}")
            time.sleep(2)
        if failed.exists():
            raise DemoError(f"the serving environment did not install ({failed.read_text().strip()}); the end of "
                            f"{log}:\n{_tail(Path(log), 15)}\nrun `make vllm` to see it again")
        self.serving_expected = True
        self.row("serving environment", f"installed (make vllm); the demo waited {time.monotonic() - t0:.0f} s for it")

    def release_1(self) -> dict[str, Any]:
        self.wait_for_serving()
        built = self.land_and_index(1)
        self.search()
        first = self.finetune("v1", after=0)
        if not first["promote"]:
            raise DemoError(f"v1 was not promoted: {first['gate']}")
        smoke = self.xcom("llmops_finetune", first["run"], "smoke_test") or {}
        self.row("smoke test v1", f"{_num(smoke.get('generate_s'), 3)} s to answer {smoke.get('prompt')!r}: "
                                  f"{str(smoke.get('answer') or '')[:60]!r}")
        if smoke.get("engine") == "vllm":
            self.row("served by", f"vLLM {smoke.get('vllm_version')} as {smoke.get('model')!r}: start-up "
                                  f"{_num(smoke.get('startup_s'), 1)} s, first request {_num(smoke.get('latency_s'), 3)} s, "
                                  f"warm {_num(smoke.get('latency_warm_s'), 3)} s ({_num(smoke.get('tokens_per_s_warm'), 0)} "
                                  f"tokens/s), first token {_num(smoke.get('ttft_s'), 3)} s")
        else:
            reason = str(smoke.get("fallback_reason") or "transformers")
            if self.serving_expected and "no serving environment" in reason:
                raise DemoError(f"the smoke test did not use the installed serving environment: {reason}")
            self.row("served by", reason)
        self.held_out(first["run"], built["dataset"])
        return first

    def held_out(self, run: dict, dataset: dict[str, Any]) -> None:
        """The untrained base on v1's eval items (never trained on), gated against v1: how much v1 learnt."""
        eval_root = Path(self.settings.runs, "llmops_finetune", run_key(run["dag_run_id"]), "eval")
        base_eval = self.root / "demo" / "base-eval"
        self.step("evaluating the untrained base model on the same held-out items (the figure v1 is measured by)")
        self.llmops("base-eval", "evaluate", "--model", self.settings.base_model, "--dataset",
                    str(dataset.get("dataset_uri")), "--output", str(base_eval), "--no-mlflow")
        policy = self.root / "demo" / "held-out-policy.yaml"
        policy.write_text(HELD_OUT_POLICY)
        report = self.root / "demo" / "v1-vs-base.json"
        cmd = [sys.executable, "-m", "llmops", "gate", "--candidate", str(eval_root / "candidate"),
               "--baseline", str(base_eval), "--policy", str(policy), "--report", str(report)]
        with (self.logs / "v1-vs-base.log").open("w") as out:
            subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                           env=airflow_env(PROJECT_ROOT / ".airflow", self.port, DEMO_ENV))
        if not report.exists():
            raise DemoError(f"the held-out comparison wrote no report:\n{_tail(self.logs / 'v1-vs-base.log')}")
        metrics = json.loads(report.read_text())["metrics"]
        text = "; ".join(
            f"{m['task']}/{m['metric']} {_num(m['candidate'], 3)} vs base {_num(m['champion'], 3)} "
            f"(p {_p(m.get('p_value_holm'))}, n={m['n']})"
            for m in metrics
        )
        self.step(f"v1 vs base on held-out items: {text}")
        self.row("v1 vs base (held-out items)", text)

    def release_2(self) -> dict[str, Any]:
        runs_before = len(self.airflow.runs("llmops_finetune"))
        self.llmops("sample-data-2", "sample-data", "--out", str(self.root / "sample"), "--release", "2",
                    "--landing", self.settings.landing)
        self.step("sample data release 2: documents for new components landed")
        self.land_and_index(2)
        second = self.finetune("v2", after=runs_before)
        report = json.loads(Path(second["gate"]["path"]).read_text()) if second["gate"].get("path") else {}
        slices = "; ".join(
            f"{m['task']}[{m['slice']}]/{m['metric']} {_num(m['candidate'], 3)} vs v1 {_num(m['champion'], 3)}: "
            f"{m['verdict']} (p {_p(m.get('p_value_holm'))}, n={m['n']})"
            for m in report.get("metrics", []) if m.get("slice")
        )
        self.row("v2 vs v1 (new / retained)", slices or "no per-slice rules in the gate policy")
        if not second["promote"]:
            # Reported, not hidden: the gate's verdict stands and v1 stays champion (the drift part then
            # finds the release-2 dataset new to the champion and retrains on it).
            self.step(f"v2 was not promoted, v1 stays champion: {second['gate']['headline']}")
        return second

    def search(self) -> None:
        rows = [json.loads(line) for line in Path(self.root, "sample", "finetune.jsonl").read_text().splitlines()]
        query = rows[0].get("prompt") or rows[0]["messages"][0]["content"]
        query = query.removeprefix("Question:").split("\n")[0].strip()
        log = self.logs / "search.json"
        with log.open("w") as out:
            subprocess.run([sys.executable, "-m", "llmops", "search", "--json", "-k", "1", query], stdout=out,
                           stderr=subprocess.DEVNULL, check=True, cwd=PROJECT_ROOT,
                           env=airflow_env(PROJECT_ROOT / ".airflow", self.port, DEMO_ENV))
        hits = json.loads(log.read_text())
        if hits:
            hit = hits[0]
            text = " ".join(str(hit.get("text", "")).split())[:70]
            self.row("sample search", f"{query!r} -> {Path(str(hit.get('source'))).name} "
                                      f"(score {_num(hit.get('score'), 3)}): {text!r}")

    def gate_report(self, run: dict) -> dict[str, Any]:
        path = Path(self.settings.runs, "llmops_finetune", run_key(run["dag_run_id"]), "eval", "gate.json")
        if not path.exists():
            return {"decision": "none", "headline": f"no gate report at {path}"}
        report = json.loads(path.read_text())
        metrics = ", ".join(
            f"{m.get('task')}{'[' + m['slice'] + ']' if m.get('slice') else ''}/{m.get('metric')} "
            f"{_num(m.get('candidate'), 3)}"
            + (f" vs {_num(m.get('champion'), 3)} ({m.get('verdict')})" if m.get("champion") is not None else "")
            for m in report.get("metrics", [])[:3]
        )
        reasons = report.get("reasons") or []
        return {"decision": report.get("decision"), "headline": metrics + (f"; {reasons[0]}" if reasons else ""),
                "path": str(path)}

    def drift_check(self, label: str, kind: str, seed: int) -> dict[str, Any]:
        traffic = Path(self.settings.traffic)
        shutil.rmtree(traffic, ignore_errors=True)
        self.llmops(f"traffic-{label}", "sample-traffic", "--out", str(traffic), "--kind", kind, "--seed", str(seed))
        finetune_runs = len(self.airflow.runs("llmops_finetune"))
        run_id = self.airflow.trigger("llmops_drift")
        run = self.run_dag("llmops_drift", run_id=run_id, timeout=600)
        summary = self.xcom("llmops_drift", run, "detect_drift") or {}
        emitted = run["task_states"].get("emit_retrain") == "success"
        self.step(f"drift check on {kind} traffic: {summary.get('status')} (p = {_num(summary.get('p_value'), 4)}; "
                  f"MMD {_num(summary.get('p_value_mmd'), 4)}, classifier {_num(summary.get('p_value_classifier'), 4)})"
                  f"{' -> llmops_retrain event' if emitted else ', no event'}")
        return {"summary": summary, "emitted": emitted, "finetune_runs_before": finetune_runs}

    def drift_retrain(self, check: dict[str, Any], datasets_before: int) -> tuple[dict, dict, dict]:
        """The dataset build and the fine-tune run a drift event starts; both must have finished."""
        ds_run = self.run_dag("llmops_dataset", after=datasets_before, timeout=600)
        ds = self.xcom("llmops_dataset", ds_run, "build") or {}
        run = self.run_dag("llmops_finetune", after=check["finetune_runs_before"], timeout=1500)
        decision = self.xcom("llmops_finetune", run, "check_trigger") or {}
        return ds, run, decision

    def drift_loop(self) -> None:
        calm = self.drift_check("in-domain", "in-domain", seed=1)
        time.sleep(10)  # give the scheduler a chance to (wrongly) start a retrain
        if calm["emitted"] or len(self.airflow.runs("llmops_finetune")) != calm["finetune_runs_before"]:
            raise DemoError("in-domain traffic started a retrain")
        self.row("drift: in-domain traffic", f"{calm['summary'].get('status')} "
                                              f"(p = {_num(calm['summary'].get('p_value'), 4)}), no retrain")

        datasets_before = len(self.airflow.runs("llmops_dataset"))
        shifted = self.drift_check("out-of-domain", "out-of-domain", seed=2)
        if not shifted["emitted"]:
            raise DemoError(f"out-of-domain traffic was not flagged: {shifted['summary']}")
        ds, run, decision = self.drift_retrain(shifted, datasets_before)
        self.step(f"dataset rebuilt for the drift event (steered by {ds.get('steered_by')}): {ds.get('dataset_hash')}, "
                  f"{ds.get('items_generated')} items generated; retrain {decision.get('decision')}: "
                  f"{decision.get('reason')}")
        if decision.get("decision") == "run":
            gate = self.gate_report(run)
            outcome = f"retrain ran on dataset {decision.get('dataset_hash')}: gate {gate['decision']}"
        else:
            outcome = f"retrain skipped: {decision.get('reason')}"
        self.row("drift: out-of-domain traffic", f"{shifted['summary'].get('status')} "
                 f"(p = {_num(shifted['summary'].get('p_value'), 4)}); dataset {ds.get('dataset_hash')} "
                 f"({ds.get('items_generated')} items generated, steered by {ds.get('steered_by')}); {outcome}")

        datasets_before = len(self.airflow.runs("llmops_dataset"))
        again = self.drift_check("out-of-domain-again", "out-of-domain", seed=3)
        if not again["emitted"]:
            raise DemoError(f"out-of-domain traffic was not flagged the second time: {again['summary']}")
        _, held, decision = self.drift_retrain(again, datasets_before)
        if held["task_states"].get("train") != "skipped" or "cooldown" not in str(decision.get("reason")):
            raise DemoError(f"the cooldown did not hold back the second retrain: {held['task_states']} {decision}")
        self.step(f"second drift retrain held back: {decision.get('reason')}")
        self.row("drift: out-of-domain again", f"{again['summary'].get('status')}: retrain held back by the "
                 f"cooldown ({self.settings.training.retrain_cooldown_hours:g} h), recorded in `llmops triggers`")

    def report(self) -> None:
        self.row("Airflow UI", f"make airflow -> http://127.0.0.1:{self.port} (runs, logs, links to MLflow)")
        self.row("MLflow UI", f"make mlflow-ui -> {self.settings.mlflow.mlflow_ui_url} (runs, drift reports, versions)")
        self.row("wall time", f"{self.elapsed()} (min:s, after install)")
        width = max(len(k) for k, _ in self.rows)
        say()
        say("airflow-llmops demo: summary")
        say("-" * 100)
        for key, value in self.rows:
            say(f"{key.ljust(width)}  {value}")
        say("-" * 100)
        summary = self.logs / "summary.json"
        summary.write_text(json.dumps(dict(self.rows), indent=2) + "\n")
        say(f"(also in {summary}; step logs in {self.logs}, task logs in .airflow/logs)")


def _dataset_row(ds: dict[str, Any]) -> str:
    return (
        f"{ds.get('dataset_hash')} (parent {ds.get('parent_dataset_hash')}): {ds.get('rows_train')} train rows, "
        f"{ds.get('rows_eval')} eval rows ({ds.get('rows_eval_new')} new, {ds.get('rows_eval_retained')} retained); "
        f"items {ds.get('items_generated')} generated, {ds.get('items_reused')} reused; chunks {ds.get('chunks_new')} "
        f"new, {ds.get('chunks_deleted')} deleted; {_num(ds.get('seconds'), 1)} s"
    )


def _p(value: Any) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _count(summary: dict, key: str) -> Any:
    value = summary.get(key)
    return len(value) if isinstance(value, list) else value


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return "n/a"


def _tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log; Airflow's JSON task-log lines shortened to their level and event."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    out = []
    for line in text:
        try:
            entry = json.loads(line)
            detail = "; ".join(f"{e.get('exc_type')}: {e.get('exc_value')}" for e in entry.get("error_detail") or [])
            line = f"{entry.get('level', '')}: {entry.get('event', '')}" + (f" ({detail})" if detail else "")
        except (json.JSONDecodeError, AttributeError):
            pass
        out.append(line[:400])
    return "\n".join(out)


def _port() -> int:
    from llmops.settings import process_settings

    port = process_settings().airflow_port
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise DemoError(
                f"port {port} is in use (is `make airflow` running?): stop it, or set LLMOPS_AIRFLOW_PORT to a free port"
            )
    return port


def main() -> int:
    settings = load_settings()
    if settings.mode != "local":
        say(f"make demo runs in mode local; the settings say mode = {settings.mode!r} (unset LLMOPS_MODE)")
        return 2
    if Path(settings.storage.data_root).resolve() != (PROJECT_ROOT / ".llmops").resolve():
        say(f"make demo owns the checkout's .llmops/ folder and starts it clean; LLMOPS_DATA_ROOT points elsewhere "
            f"({settings.storage.data_root}): unset it to run the demo")
        return 2
    try:
        demo = Demo(settings, _port())
        demo.prepare()
        demo.start_airflow()
        try:
            demo.release_1()
            demo.release_2()
            demo.drift_loop()
        finally:
            demo.airflow.stop()
        demo.report()
    except (DemoError, AirflowError) as exc:
        say(f"\ndemo failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
