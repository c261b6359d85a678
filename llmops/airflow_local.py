"""Run the real Airflow (scheduler, dag-processor, triggerer, API server) on this machine, in local mode.

Used by `make demo`, `make airflow` and the scheduler integration test. Everything lives under the
git-ignored `.airflow/` of the checkout (SQLite metadata DB, logs); the project's `dags/` and `plugins/`
folders are configured through `AIRFLOW__*` variables, so no `airflow.cfg` edits are needed. Airflow is
driven through its public REST API (`/api/v2`), never by importing it: this module stays importable in
images without Airflow.

Local-only choices, which production must not copy: SQLite with the LocalExecutor (`airflow standalone`),
and the simple auth manager with every user an admin. Production runs PostgreSQL and a real auth manager
(see the README).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def airflow_env(home: Path | None = None, port: int = 8080, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Airflow processes in local mode."""
    home = Path(home or PROJECT_ROOT / ".airflow")
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # Two cores: one task at a time keeps Spark and torch from fighting over them.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.update(extra or {})
    return env


class AirflowError(RuntimeError):
    """The local Airflow did not start, or a DAG run did not end as expected."""


@dataclass
class LocalAirflow:
    """`airflow standalone` in the background, with a small REST client."""

    home: Path = field(default_factory=lambda: PROJECT_ROOT / ".airflow")
    port: int = 8080
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 240) -> LocalAirflow:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "standalone.log", "ab")  # noqa: SIM115 - lives as long as the process
        env = airflow_env(self.home, self.port, self.extra_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(PROJECT_ROOT),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AirflowError(f"airflow standalone exited with {self.proc.returncode}; see {self.home}/standalone.log")
            try:
                health = self.get("/api/v2/monitor/health")
                if all(health.get(c, {}).get("status") == "healthy" for c in ("scheduler", "triggerer", "dag_processor")):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, AirflowError):
                pass
            time.sleep(2)
        self.stop()
        raise AirflowError(f"Airflow did not become healthy within {timeout:.0f}s; see {self.home}/standalone.log")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> LocalAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST --------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict | None = None, attempts: int = 5) -> Any:
        """One API call. A 5xx is retried: on SQLite the API server's reads can collide with the
        scheduler's writes ("database is locked"); the last one raises with the server's message."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(
                self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    text = resp.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == attempts:
                    detail = exc.read().decode(errors="replace")[:1000]
                    raise AirflowError(f"{method} {path}: HTTP {exc.code} {exc.reason}: {detail}") from exc
                time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict) -> Any:
        return self._request("PATCH", path, body)

    # --- DAGs and runs -----------------------------------------------------------------------------

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed every DAG, and fail on import errors."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = self.get("/api/v2/importErrors").get("import_errors", [])
            if errors:
                detail = "\n".join(f"{e['filename']}: {e['stack_trace'][-800:]}" for e in errors)
                raise AirflowError(f"DAG import errors:\n{detail}")
            known = {d["dag_id"] for d in self.get("/api/v2/dags?limit=100").get("dags", [])}
            if set(dag_ids) <= known:
                return
            time.sleep(2)
        raise AirflowError(f"DAGs not parsed within {timeout:.0f}s: {sorted(set(dag_ids) - known)}")

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        """Runs of a DAG, oldest first."""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100").get("dag_runs", [])

    def wait_for_run(self, dag_id: str, run_id: str | None = None, after: int = 0, timeout: float = 900) -> dict:
        """Wait for a given run, or for the (`after`+1)-th run of the DAG, to finish; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            run = next((r for r in runs if r["dag_run_id"] == run_id), None) if run_id else (
                runs[after] if len(runs) > after else None
            )
            if run and run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise AirflowError(f"{dag_id} run {run_id or f'#{after + 1}'} did not finish within {timeout:.0f}s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").get("task_instances", [])
        return {ti["task_id"]: ti["state"] for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        try:
            entry = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        except AirflowError as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return None
            raise
        value = entry.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value

    def asset_events(self, asset_name: str) -> list[dict]:
        assets = self.get(f"/api/v2/assets?name_pattern={asset_name}").get("assets", [])
        asset = next((a for a in assets if a["name"] == asset_name), None)
        if asset is None:
            return []
        return self.get(f"/api/v2/assets/events?asset_id={asset['id']}&order_by=timestamp").get("asset_events", [])


def main() -> None:
    """`make airflow`: the local Airflow in the foreground (UI on http://127.0.0.1:8080, Ctrl-C stops)."""
    from llmops.settings import process_settings

    port = process_settings().airflow_port
    env = airflow_env(port=port)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    print(f"Airflow UI: http://127.0.0.1:{port} (local mode: every user is admin)", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


if __name__ == "__main__":
    main()
