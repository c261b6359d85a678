"""Two real `llmops train` processes on one --output-dir: the second never trains alongside the first.

It exits 75 naming the holder (no wait), or waits; when the first dies, the waiting one takes the lease
over and resumes from the last complete checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from llmops.dev.bench.training import read_step_log, train_command
from llmops.training.checkpoint import find_resume

OVERRIDES = ["max_steps=100000", "save_every=4", "batch_size=2", "threads=1", "eval_fraction=0.05"]


def _lines(proc: subprocess.Popen) -> list[str]:
    """Collect a process's stderr lines in the background."""
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait(cond, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_train_on_one_output_dir_names_the_holder_or_waits_and_resumes_after_it_dies(
        tmp_path, tiny_model, sample_dir):
    out = tmp_path / "run"
    cmd = train_command(str(tiny_model), str(sample_dir / "finetune.jsonl"), out, OVERRIDES, tracking=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiting = None
    try:
        _wait(lambda: len(read_step_log(out)) >= 5, "the first run's step 5 (after its checkpoint at 4)")

        second = subprocess.run(cmd, env={**env, "LLMOPS_LEASE_WAIT_SECONDS": "0"}, capture_output=True, text=True,
                                timeout=300, check=False)
        assert second.returncode == 75, second.stderr[-2000:]
        assert f"training output {out} is being written by another writer" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "since " in second.stderr

        waiting = subprocess.Popen(cmd, env={**env, "LLMOPS_LEASE_WAIT_SECONDS": "300"}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        log = _lines(waiting)
        _wait(lambda: any("is held by" in line for line in log), "the third run to wait for the lease")
        assert first.poll() is None  # the first still trains, alone
        first.send_signal(signal.SIGKILL)
        first.wait()
        # The newest complete checkpoint it left (the waiting run writes none before it has resumed).
        resumed = find_resume(str(out / "checkpoints"), "true").step

        _wait(lambda: any(r["pid"] == waiting.pid for r in read_step_log(out)), "the third run's first step")
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(timeout=120) == 143
    finally:
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    text = "".join(log)
    assert "Took over the lease on training output" in text and f"pid {first.pid}" in text and "is gone" in text
    assert f"Resuming from {out / 'checkpoints' / f'step-{resumed:06d}'}" in text
    # One writer at a time: every step of the first run precedes every step of the third; the second wrote none.
    pids = [r["pid"] for r in read_step_log(out)]
    assert set(pids) == {first.pid, waiting.pid}
    assert pids == sorted(pids, key=lambda p: p == waiting.pid)
    assert next(r["step"] for r in read_step_log(out) if r["pid"] == waiting.pid) == resumed + 1
