"""Mode `local`: run a step command as a subprocess of the Airflow worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from llmops.settings import Settings
from llmops_operators.base import (
    SKIPPED_SUMMARY,
    attach_summary_to_outlets,
    normalize_exit_codes,
    step_command,
    step_words,
)

KILL_GRACE_S = 30
"""Seconds between SIGTERM and SIGKILL when the task is killed (training checkpoints in between)."""


class LocalStepOperator(BaseOperator):
    """Run `llmops <step> ...` in a subprocess, streaming its output into the task log.

    The step's exit code decides the task's fate: 0 succeeds (returning the step's summary JSON as
    XCom), a code in `skip_on_exit_code` skips, anything else fails with the code and the last lines
    the step printed. Killing the task (UI "mark failed", timeout) terminates the whole process group:
    SIGTERM first, so a training step can checkpoint, then SIGKILL after `KILL_GRACE_S`.
    """

    template_fields: Sequence[str] = ("arguments", "env")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        step: str | Sequence[str],
        arguments: Sequence[str] = (),
        env: dict[str, str] | None = None,
        summary: bool = True,
        skip_on_exit_code: int | Container[int] | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step_words(step)
        self.arguments = list(arguments)
        self.env = env or {}
        self.summary = summary
        self.skip_on_exit_code = normalize_exit_codes(skip_on_exit_code)
        self.settings = settings
        self._proc: subprocess.Popen | None = None

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings is not None:
            env.update(self.settings.to_env())
        env.update({k: str(v) for k, v in self.env.items()})
        # The step must run on the worker's own interpreter (the venv that has the project installed).
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def execute(self, context: Any) -> Any:
        with tempfile.TemporaryDirectory(prefix="llmops-step-") as tmp:
            summary_path = str(Path(tmp) / "summary.json") if self.summary else None
            cmd = step_command(self.step, self.arguments, summary_path)
            cmd = [sys.executable, "-m", "llmops", *cmd[1:]]
            self.log.info("Running: %s", " ".join(cmd))
            tail: deque[str] = deque(maxlen=20)
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
                text=True,
                errors="replace",
                bufsize=1,
            )
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
            code = self._proc.wait()
            self._proc = None
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
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        pgid = os.getpgid(proc.pid)
        self.log.warning("Task killed: sending SIGTERM to step process group %s", pgid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self.log.warning("Step did not stop within %ss: SIGKILL", KILL_GRACE_S)
            os.killpg(pgid, signal.SIGKILL)
