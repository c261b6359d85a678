"""`make demo`: the whole lifecycle on this machine, through the real Airflow scheduler.

1. Builds the tiny base model and writes the sample corpus (the fictional product Larkspur) into the
   landing folder, and its fine-tuning set beside it.
2. Starts Airflow in local mode (`airflow standalone`, SQLite under `.airflow/`) and triggers the landing
   sensor; from there the assets chain the DAGs: the sensor's `llmops_landing` event starts preprocessing
   (Spark `local[*]`, Milvus Lite), its `llmops_corpus` event starts the fine-tune DAG (train, evaluate,
   gate, register, promote, render and validate manifests, smoke test, deploy to the GitOps folder).
3. Replays inference traffic into the traffic folder and triggers the drift DAG three times: in-domain
   traffic (no drift, no retrain), out-of-domain traffic (drift: a `llmops_retrain` event, one retrain),
   and out-of-domain again (drift, but the cooldown holds the second retrain back).
4. Prints a summary table and where to look (Airflow and MLflow UIs).

The demo owns the default data folder: it starts from a clean `.llmops/` (the model cache is kept) and a
clean `.airflow/`. Its schedules are off (`none`) while it runs, so that only the runs it starts happen;
`make airflow` runs the same DAGs on their schedules. This module drives Airflow over its REST API and
never imports it.
"""

from __future__ import annotations

import json
import os
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

DAGS = ["llmops_data_sensor", "llmops_preprocess", "llmops_finetune", "llmops_drift"]
DEMO_ENV = {
    # Only the runs the demo starts: no cron runs in between (the asset-triggered ones still chain).
    "LLMOPS_LANDING_SCHEDULE": "none",
    "LLMOPS_DRIFT_SCHEDULE": "none",
    "LLMOPS_RETRAIN_SCHEDULE": "none",
    "LLMOPS_LANDING_POKE_INTERVAL_S": "5",
}
KEEP = {"cache"}
"""Sub-folders of the data root the clean start keeps (downloaded models)."""


class DemoError(RuntimeError):
    """A demo step did not end as expected; the message says where to look."""


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.root = Path(settings.data_root)
        self.logs = self.root / "demo"
        self.port = port
        self.airflow = LocalAirflow(home=PROJECT_ROOT / ".airflow", port=port, extra_env=DEMO_ENV)
        self.rows: list[tuple[str, str]] = []
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

        base = self.llmops("base-model", "base-model", "build", "--out", self.settings.base_model_uri)
        self.step(f"tiny base model: {base.get('parameters', '?')} parameters, vocabulary {base.get('vocab_size')} "
                  f"-> {self.settings.base_model_uri}")
        sample = self.llmops("sample-data", "sample-data", "--out", str(self.root / "sample"),
                             "--landing", self.settings.landing)
        self.step(f"sample data: {_count(sample, 'documents')} documents landed in {self.settings.landing}, "
                  f"{_count(sample, 'finetune_rows')} fine-tuning rows")

    def start_airflow(self) -> None:
        self.step(f"starting Airflow (scheduler, dag-processor, triggerer, API server on port {self.port}); "
                  f"log: .airflow/standalone.log")
        self.airflow.start()
        self.airflow.wait_for_dags(DAGS)
        self.step("Airflow is up; DAGs parsed: " + ", ".join(DAGS))

    def ingest_and_train(self) -> dict[str, Any]:
        sensor_id = self.airflow.trigger("llmops_data_sensor")
        self.step(f"triggered llmops_data_sensor ({sensor_id}); the assets chain the rest")
        sensor = self.run_dag("llmops_data_sensor", run_id=sensor_id, timeout=300)
        if sensor["task_states"].get("detect_changes") != "success":
            raise DemoError(f"the sensor found no new documents: {sensor['task_states']}")
        self.step("sensor: new documents -> llmops_landing event")

        pre = self.run_dag("llmops_preprocess", timeout=900)
        summary = self.xcom("llmops_preprocess", pre, "preprocess") or {}
        self.step(f"preprocess ({pre['run_type']}): {summary.get('chunks_total')} chunks of "
                  f"{summary.get('documents_indexed')} documents -> llmops_corpus event")
        self.row("index", f"{summary.get('chunks_total')} chunks from {summary.get('documents_indexed')} documents, "
                          f"{summary.get('duplicates_removed')} duplicates removed; snapshot {summary.get('snapshot_id')}")
        store = summary.get("vector_store") or {}
        self.row("vector store", f"Milvus Lite {store.get('uri')}, collection {store.get('collection')}"
                                 if isinstance(store, dict) else str(store))
        self.search()

        self.step("fine-tune DAG started by the corpus event: train, evaluate, gate, register, promote, deploy")
        first = self.run_dag("llmops_finetune", after=0, timeout=1500)
        trigger = self.xcom("llmops_finetune", first, "check_trigger") or {}
        train = self.xcom("llmops_finetune", first, "train") or {}
        promote = self.xcom("llmops_finetune", first, "promote") or {}
        rendered = self.xcom("llmops_finetune", first, "render_manifests") or {}
        smoke = self.xcom("llmops_finetune", first, "smoke_test") or {}
        deploy = self.xcom("llmops_finetune", first, "deploy") or {}
        gate = self.gate_report(first)
        self.step(f"fine-tune ({trigger.get('trigger')} trigger): gate {gate['decision']}, "
                  f"version {promote.get('version')} is champion")
        self.row("adapter", f"{train.get('adapter_dir')} ({train.get('steps')} steps, eval loss "
                            f"{_num(train.get('eval_loss'))}, {_num(train.get('tokens_per_s'), 0)} tokens/s)")
        self.row("gate (first run)", f"{gate['decision']}: {gate['headline']}")
        self.row("model version", f"{promote.get('registered_model_name')} v{promote.get('version')}, "
                                  f"alias {', '.join(promote.get('aliases') or ['champion'])}")
        self.row("manifests", f"{rendered.get('manifests_uri')} ({len(rendered.get('files') or [])} files, validated; "
                              f"live version {deploy.get('live')})")
        self.row("smoke test", f"{_num(smoke.get('generate_s'), 3)} s to answer {smoke.get('prompt')!r}: "
                               f"{str(smoke.get('answer') or '')[:60]!r}")
        return {"first": first}

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
            f"{m.get('task')}/{m.get('metric')} {_num(m.get('candidate'), 3)}"
            + (f" vs {_num(m.get('champion'), 3)}" if m.get("champion") is not None else "")
            for m in report.get("metrics", [])[:2]
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

    def drift_loop(self) -> None:
        calm = self.drift_check("in-domain", "in-domain", seed=1)
        time.sleep(10)  # give the scheduler a chance to (wrongly) start a retrain
        if calm["emitted"] or len(self.airflow.runs("llmops_finetune")) != calm["finetune_runs_before"]:
            raise DemoError("in-domain traffic started a retrain")
        self.row("drift: in-domain traffic", f"{calm['summary'].get('status')} "
                                              f"(p = {_num(calm['summary'].get('p_value'), 4)}), no retrain")

        shifted = self.drift_check("out-of-domain", "out-of-domain", seed=2)
        if not shifted["emitted"]:
            raise DemoError(f"out-of-domain traffic was not flagged: {shifted['summary']}")
        retrain = self.run_dag("llmops_finetune", after=shifted["finetune_runs_before"], timeout=1500)
        trigger = self.xcom("llmops_finetune", retrain, "check_trigger") or {}
        gate = self.gate_report(retrain)
        self.step(f"retrain ({trigger.get('trigger')} trigger, {trigger.get('decision')}): gate {gate['decision']}")
        self.row("drift: out-of-domain traffic", f"{shifted['summary'].get('status')} "
                 f"(p = {_num(shifted['summary'].get('p_value'), 4)}): retrain {retrain['dag_run_id']} ran, "
                 f"gate {gate['decision']} ({gate['headline']})")

        again = self.drift_check("out-of-domain-again", "out-of-domain", seed=3)
        if not again["emitted"]:
            raise DemoError(f"out-of-domain traffic was not flagged the second time: {again['summary']}")
        held = self.run_dag("llmops_finetune", after=again["finetune_runs_before"], timeout=600)
        decision = self.xcom("llmops_finetune", held, "check_trigger") or {}
        if held["task_states"].get("train") != "skipped":
            raise DemoError(f"the cooldown did not hold back the second retrain: {held['task_states']}")
        self.step(f"second drift retrain held back: {decision.get('reason')}")
        self.row("drift: out-of-domain again", f"{again['summary'].get('status')}: retrain held back by the "
                 f"cooldown ({self.settings.retrain_cooldown_hours:g} h), recorded in `llmops triggers`")

    def report(self) -> None:
        self.row("Airflow UI", f"make airflow -> http://127.0.0.1:{self.port} (runs, logs, links to MLflow)")
        self.row("MLflow UI", f"make mlflow-ui -> {self.settings.mlflow_ui_url} (runs, drift reports, versions)")
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
    port = int(os.environ.get("LLMOPS_AIRFLOW_PORT", "8080"))
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
    if Path(settings.data_root).resolve() != (PROJECT_ROOT / ".llmops").resolve():
        say(f"make demo owns the checkout's .llmops/ folder and starts it clean; LLMOPS_DATA_ROOT points elsewhere "
            f"({settings.data_root}): unset it to run the demo")
        return 2
    try:
        demo = Demo(settings, _port())
        demo.prepare()
        demo.start_airflow()
        try:
            demo.ingest_and_train()
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
