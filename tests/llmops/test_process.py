"""A step process never outlives its starter: real processes, SIGKILLed starters, a stubborn child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.process import StepProcess, die_with_parent, process_alive

# The step: SIGTERM handling as the trainer does it (note it, exit 143) or ignored; a grandchild in its
# process group that only a group kill reaches.
CHILD = """
import signal, subprocess, sys, time
from pathlib import Path
out, mode = Path(sys.argv[1]), sys.argv[2]
def on_term(signum, frame):
    (out / "term").write_text("SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else on_term)
grandchild = subprocess.Popen(["sleep", "600"])
(out / "pids").write_text(f"{grandchild.pid}")
while True:
    time.sleep(0.05)
"""

STARTER = """
import sys, time
from llmops.process import StepProcess
step = StepProcess([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], grace_s=float(sys.argv[4]))
step.start()
print(step.proc.pid, step.watchdog.pid, flush=True)
time.sleep(600)
"""


def _wait_for(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def _gone_within(pids: list[int], timeout: float) -> float:
    started = time.monotonic()
    while any(process_alive(p) for p in pids):
        assert time.monotonic() - started < timeout, f"still alive after {timeout} s: {pids}"
        time.sleep(0.02)
    return time.monotonic() - started


def _start_and_kill_starter(tmp_path: Path, mode: str, grace_s: float) -> tuple[list[int], float]:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, CHILD, str(tmp_path), mode, str(grace_s)],
                               stdout=subprocess.PIPE, text=True)
    try:
        child, watchdog = (int(x) for x in starter.stdout.readline().split())
        grandchild = int(_wait_for(tmp_path / "pids"))
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    pids = [child, grandchild, watchdog]
    return pids, _gone_within(pids, timeout=grace_s + 10)


def test_the_step_and_its_group_stop_with_a_killed_starter(tmp_path):
    pids, seconds = _start_and_kill_starter(tmp_path, "polite", grace_s=30)
    # SIGTERM (not the SIGKILL after the 30 s grace) stopped the step, its grandchild and the watchdog.
    assert (tmp_path / "term").read_text() == "SIGTERM"
    assert seconds < 10, seconds


def test_a_step_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    pids, seconds = _start_and_kill_starter(tmp_path, "stubborn", grace_s=1.0)
    assert not (tmp_path / "term").exists()
    assert 0.9 <= seconds < 8, seconds


def test_close_stops_what_a_finished_step_left_in_its_group(tmp_path):
    leftover = tmp_path / "leftover"
    code = ("import subprocess, sys; p = subprocess.Popen(['sleep', '600']); "
            f"open({str(leftover)!r}, 'w').write(str(p.pid))")
    step = StepProcess([sys.executable, "-c", code], grace_s=5)
    step.start()
    assert step.proc.wait(timeout=60) == 0
    grandchild = int(_wait_for(leftover))
    assert process_alive(grandchild)
    assert step.close() == "terminated"
    assert not process_alive(grandchild)
    assert step.close() == "gone"  # idempotent


def test_parent_death_signal_alone_reaches_the_child(tmp_path):
    """PR_SET_PDEATHSIG without the watchdog: the kernel's SIGTERM arrives when the parent dies."""
    if die_with_parent() is None:
        pytest.skip("PR_SET_PDEATHSIG is Linux only (elsewhere the watchdog alone does the job)")
    starter = (
        "import subprocess, sys, time\n"
        "from llmops.process import die_with_parent\n"
        "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2], 'polite'], preexec_fn=die_with_parent())\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", starter, CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    grandchild = int(_wait_for(tmp_path / "pids"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _gone_within([child], timeout=10)
    assert (tmp_path / "term").read_text() == "SIGTERM"
    # Only the direct child: its grandchild survives, which is why the watchdog kills the whole group.
    assert process_alive(grandchild)
    os.kill(grandchild, signal.SIGKILL)
