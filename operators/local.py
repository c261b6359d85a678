"""Mode `local`: run a step command as a subprocess of the Airflow worker.

The step never outlives its task (`llmops.process.StepProcess`): it gets SIGTERM from the kernel when
the task process dies (`PR_SET_PDEATHSIG`), a watchdog process terminates its whole process group
(SIGTERM, then SIGKILL after the grace period) once the task is gone, and every exit path of `execute`
and `on_kill` cleans the group up. So a retry of a task whose worker was OOM-killed never finds the
first try's step still writing: its lease on the run folder (`llmops.lease`) is free within seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from llmops.process import StepProcess
from llmops.settings import Settings
from llmops_operators.base import (
    SKIPPED_SUMMARY,
    attach_summary_to_outlets,
    normalize_exit_codes,
    step_command,
    step_words,
)

KILL_GRACE_S = 30
"""Seconds between SIGTERM and SIGKILL when the task is killed or dies (training checkpoints in between)."""


class LocalStepOperator(BaseOperator):
    """Run `llmops <step> ...` in a subprocess, streaming its output into the task log.

    The step's exit code decides the task's fate: 0 succeeds (returning the step's summary JSON as
    XCom), a code in `skip_on_exit_code` skips, anything else fails with the code and the last lines
    the step printed. Killing the task (UI "mark failed", timeout) terminates the whole process group:
    SIGTERM first, so a training step can checkpoint, then SIGKILL after `kill_grace_s`. The same happens
    when the task process dies without a chance to clean up (see the module docstring).
    """

    template_fields: Sequence[str] = ("arguments", "env")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        step: str | Sequence[str],
        arguments: Sequence[str] = (),
        env: dict[str, str] | None = None,
        connection_env: dict[str, str] | None = None,
        summary: bool = True,
        skip_on_exit_code: int | Container[int] | None = None,
        settings: Settings | None = None,
        kill_grace_s: float = KILL_GRACE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step_words(step)
        self.arguments = list(arguments)
        self.env = env or {}
        self.connection_env = connection_env or {}
        self.summary = summary
        self.skip_on_exit_code = normalize_exit_codes(skip_on_exit_code)
        self.settings = settings
        self.kill_grace_s = kill_grace_s
        self._step: StepProcess | None = None

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings is not None:
            env.update(self.settings.to_env())
        env.update({k: str(v) for k, v in self.env.items()})
        env.update(self._connection_secrets())
        # The step must run on the worker's own interpreter (the venv that has the project installed).
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _connection_secrets(self) -> dict[str, str]:
        """`connection_env`'s variables, each the password of its Airflow connection, read when the task runs
        (never at parse time, never in the rendered template fields)."""
        if not self.connection_env:
            return {}
        from airflow.sdk import Connection

        out = {}
        for variable, conn_id in self.connection_env.items():
            password = Connection.get(conn_id).password
            if not password:
                raise AirflowException(f"connection {conn_id!r} (for {variable}) has no password: set the secret there")
            out[variable] = password
        return out

    def execute(self, context: Any) -> Any:
        with tempfile.TemporaryDirectory(prefix="llmops-step-") as tmp:
            summary_path = str(Path(tmp) / "summary.json") if self.summary else None
            cmd = step_command(self.step, self.arguments, summary_path)
            cmd = [sys.executable, "-m", "llmops", *cmd[1:]]
            self.log.info("Running: %s", " ".join(cmd))
            tail: deque[str] = deque(maxlen=20)
            step = self._step = StepProcess(cmd, env=self._environment(), grace_s=self.kill_grace_s)
            try:
                proc = step.start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                  bufsize=1)
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    tail.append(line)
                    self.log.info("%s", line)
                code = proc.wait()
            finally:
                # Every exit path (an exception in this loop included): nothing of the step is left running.
                if step.close() not in ("gone", "terminated"):
                    self.log.warning("Step process group did not stop on SIGTERM within %ss: killed", self.kill_grace_s)
                self._step = None
            last = "\n".join(tail)
            name = " ".join(self.step)
            if code in self.skip_on_exit_code:
                if summary_path and Path(summary_path).exists():
                    # Not the return value (downstream templates read that as "the step ran"); the plugin's
                    # links read it, e.g. the report of a rejecting gate.
                    context["ti"].xcom_push(key=SKIPPED_SUMMARY, value=json.loads(Path(summary_path).read_text()))
                raise AirflowSkipException(f"llmops {name} exited {code}; skipping downstream. Last output:\n{last}")
            if code != 0:
                raise AirflowException(f"llmops {name} failed with exit code {code}. Last output:\n{last}")
            summary = None
            if summary_path and Path(summary_path).exists():
                summary = json.loads(Path(summary_path).read_text())
            attach_summary_to_outlets(self, context, summary)
            return summary

    def on_kill(self) -> None:
        step = self._step
        if step is None or step.proc is None or step.proc.poll() is not None:
            return
        self.log.warning("Task killed: sending SIGTERM to step process group %s", step.pgid)
        if step.stop() == "killed":
            self.log.warning("Step did not stop within %ss: SIGKILL", self.kill_grace_s)
