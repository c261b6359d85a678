"""`LocalStepOperator`: the step never outlives its task.

The contract: `LocalStepOperator(task_id=..., step="train", arguments=[...]).execute({})` runs in a
process; when that process is SIGKILLed, the `llmops train` it started exits within 15 s, having
checkpointed on SIGTERM; a retry resumes from that checkpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmops.dev.bench.training import read_step_log
from llmops.lease import read_holder
from llmops.process import StepProcess, process_alive

TASK = """
import json, sys
from llmops_operators.local import LocalStepOperator
LocalStepOperator(task_id="train", step="train", arguments=json.loads(sys.argv[1])).execute({})
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from llmops.dev.base_model import build_base_model

    return build_base_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama", pretrain_steps=0)


def train_arguments(model: Path, dataset: Path, out: Path, max_steps: int) -> list[str]:
    sets = [f"base_model={model}", f"dataset={dataset}", f"max_steps={max_steps}", "save_every=100000",
            "batch_size=2", "threads=1", "eval_fraction=0.05"]
    return ["--output-dir", str(out), "--no-tracking", *[w for s in sets for w in ("--set", s)]]


def _wait_for_steps(out: Path, n: int, task: subprocess.Popen, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        steps = read_step_log(out)
        if len(steps) >= n:
            return steps
        if task.poll() is not None:
            raise AssertionError(f"the task exited ({task.returncode}) before step {n}: {task.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no step {n} within {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_sigkilled_task_stops_its_train_step_which_checkpoints_and_a_retry_resumes(tmp_path, tiny_model,
                                                                                       sample_dir):
    from llmops_operators.local import LocalStepOperator

    out = tmp_path / "run"
    dataset = sample_dir / "finetune.jsonl"
    args = train_arguments(tiny_model, dataset, out, max_steps=100000)
    task = subprocess.Popen([sys.executable, "-c", TASK, json.dumps(args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        steps = _wait_for_steps(out, 3, task)
    finally:
        task.send_signal(signal.SIGKILL)
        task.wait()
    killed_at = time.monotonic()
    train_pid = steps[-1]["pid"]
    while process_alive(train_pid):
        assert time.monotonic() - killed_at < 15, "llmops train outlived its task by 15 s"
        time.sleep(0.02)
    exit_s = time.monotonic() - killed_at

    # It stopped on SIGTERM, not SIGKILL: the step in flight finished and was checkpointed (save_every is
    # 100000, so this checkpoint can only come from the signal), and the lease was released on the way out.
    last = read_step_log(out)[-1]["step"]
    assert last >= steps[-1]["step"]
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert checkpoints == [f"step-{last:06d}"], checkpoints
    assert (out / "checkpoints" / checkpoints[0] / "COMPLETE.json").exists()
    holder = read_holder(str(out))
    assert holder.pid == train_pid and holder.released_at is not None
    print(f"task SIGKILL -> llmops train exit: {exit_s:.2f} s (checkpoint at step {last})")

    # The retry (same task, in this process) resumes from that checkpoint and finishes.
    retry = LocalStepOperator(task_id="train", step="train",
                              arguments=train_arguments(tiny_model, dataset, out, max_steps=last + 2))
    summary = retry.execute({})
    assert summary["resumed_from"] == str(out / "checkpoints" / f"step-{last:06d}")
    assert summary["steps"] == last + 2 and summary["steps_this_attempt"] == 2
    assert {row["pid"] for row in read_step_log(out)[-2:]} != {train_pid}


class SleepyStep(StepProcess):
    """Test double of the step command (the process boundary): prints a line, then sleeps; `stubborn`
    ignores SIGTERM. Everything else (process group, watchdog, cleanup) is the real StepProcess."""

    stubborn = False

    def __init__(self, cmd, env=None, grace_s=30.0):
        code = ("import signal, time\n"
                + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if self.stubborn else "")
                + "print('started', flush=True)\ntime.sleep(600)\n")
        super().__init__([sys.executable, "-c", code], env, grace_s)


def test_the_step_group_is_cleaned_up_when_execute_fails(monkeypatch):
    """An exception while the step runs (here: the task log fails) still stops the step's process group."""
    from llmops_operators.local import LocalStepOperator

    monkeypatch.setattr("llmops_operators.local.StepProcess", SleepyStep)
    op = LocalStepOperator(task_id="t", step="train", summary=False, kill_grace_s=5)
    seen: list[int] = []

    def failing_log(msg, *args):
        if op._step is not None and op._step.proc is not None:
            seen.append(op._step.proc.pid)
            raise RuntimeError("log sink is gone")

    monkeypatch.setattr(op.log, "info", failing_log)
    with pytest.raises(RuntimeError, match="log sink is gone"):
        op.execute({})
    assert seen and not process_alive(seen[0])
    assert op._step is None


@pytest.mark.parametrize("stubborn", [False, True])
def test_on_kill_terminates_the_step_then_kills_it_after_the_grace_period(monkeypatch, stubborn):
    from airflow.sdk.exceptions import AirflowException

    from llmops_operators.local import LocalStepOperator

    monkeypatch.setattr(SleepyStep, "stubborn", stubborn)
    monkeypatch.setattr("llmops_operators.local.StepProcess", SleepyStep)
    op = LocalStepOperator(task_id="t", step="train", summary=False, kill_grace_s=1)
    started = threading.Event()
    monkeypatch.setattr(op.log, "info", lambda msg, *a: started.set() if a and a[0] == "started" else None)
    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: _capture(errors, op.execute, {}))
    runner.start()
    assert started.wait(60)
    pid = op._step.proc.pid
    began = time.monotonic()
    op.on_kill()
    runner.join(30)
    assert not process_alive(pid)
    took = time.monotonic() - began
    assert (0.9 <= took < 5) if stubborn else took < 1.0, took
    assert isinstance(errors[0], AirflowException)
    assert f"exit code {-signal.SIGKILL if stubborn else -signal.SIGTERM}" in str(errors[0])


def _capture(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:
        errors.append(exc)
