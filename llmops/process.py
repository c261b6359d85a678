"""A step process that never outlives the process that started it.

`LocalStepOperator` runs `llmops <step>` as a child of the Airflow task process. When that task process
dies without running its cleanup (the worker is OOM-killed, the supervisor SIGKILLs it, `airflow
standalone` is stopped from outside), the step must stop too, or it keeps writing its run folder while
Airflow's retry starts a second writer next to it. Two mechanisms, because either alone has a gap:

1. **Parent-death signal** (Linux `PR_SET_PDEATHSIG`, set between fork and exec): the kernel sends the
   step SIGTERM the moment its parent dies, so training checkpoints as it does on preemption. It reaches
   the direct child only, and it fires when the *thread* that forked the child ends (the operator's
   thread waits for the step, so it ends after it).
2. **A watchdog process** in its own session, holding the read end of a pipe whose write end only the
   starter holds: the kernel closes that pipe when the starter dies, however it dies. The watchdog then
   sends SIGTERM to the step's whole process group (torchrun workers, a Spark JVM, anything the step
   started), waits a grace period, and sends SIGKILL to whatever is left. It needs no cooperation from
   the step, so a step stuck in native code (holding Python's GIL) is still stopped.

`StepProcess.close()` runs on every exit path of the starter (normal, exception, `on_kill`): whatever is
left of the process group is terminated the same way, and the watchdog is released.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""prctl option: the signal the calling process gets when its parent (thread) dies (linux/prctl.h)."""

DEFAULT_GRACE_S = 30.0
"""Seconds between SIGTERM and SIGKILL (a training step finishes its step and checkpoints in between)."""


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` giving the child `sig` when its parent dies (None where prctl does not exist)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    # Looked up here, in the parent: the child between fork and exec only calls the function pointer.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            # The parent died between fork and prctl: the signal will never come.
            os.kill(os.getpid(), int(sig))

    return preexec


# --- process groups ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def process_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot): with the pid it names one process, even after
    the pid has been reused. None off Linux or when the process is gone."""
    stat = _proc_stat(pid)
    return stat[2] if stat else None


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process `pid` (started at `start_ticks`, when given) still runs; a zombie does not."""
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return start_ticks is None or stat[2] == start_ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_exists(pgid: int) -> bool:
    """Whether process group `pgid` has any member, zombies included (one cheap system call)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group `pgid`."""
    if not _group_exists(pgid):
        return False
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                    return True
        return False
    return True


def terminate_group(pgid: int, grace_s: float, poll_s: float = 0.05) -> str:
    """SIGTERM to the group, SIGKILL after `grace_s` to what is left. Returns `gone` (nothing was left),
    `terminated` (it stopped on SIGTERM) or `killed`."""
    if not group_alive(pgid):
        return "gone"
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return "terminated"
        time.sleep(poll_s)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "terminated"
    return "killed"


# --- the step process ------------------------------------------------------------------------------------


class StepProcess:
    """`cmd` in its own process group, stopped with its starter (see the module docstring).

    `start()` returns the `subprocess.Popen` (extra keyword arguments go to it); `stop()` terminates
    the group (SIGTERM, then SIGKILL after `grace_s`); `close()` must run on every exit path.
    """

    def __init__(self, cmd: Sequence[str], env: dict[str, str] | None = None, grace_s: float = DEFAULT_GRACE_S):
        self.cmd = list(cmd)
        self.env = env
        self.grace_s = grace_s
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.watchdog: subprocess.Popen | None = None
        self._pipe_w: int | None = None

    def start(self, **popen_kwargs: Any) -> subprocess.Popen:
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
            **popen_kwargs,
        )
        self.pgid = self.proc.pid  # a new session: the step leads its own process group
        r, w = os.pipe()
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", "llmops.process", "--pgid", str(self.pgid), "--fd", str(r),
                 "--grace", str(self.grace_s)],
                pass_fds=(r,),
                # Its own session: a signal to the starter's process group (Airflow's kill) leaves it alone.
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
            )
        except BaseException:
            os.close(w)
            self.stop()
            raise
        finally:
            os.close(r)
        self._pipe_w = w
        return self.proc

    def stop(self) -> str:
        """Terminate the step's process group; see `terminate_group` for the result."""
        if self.pgid is None:
            return "gone"
        result = terminate_group(self.pgid, self.grace_s)
        if self.proc is not None and result != "gone":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        return result

    def close(self) -> str:
        """Stop whatever is left of the group and release the watchdog (idempotent)."""
        result = self.stop()
        if self._pipe_w is not None:
            os.close(self._pipe_w)
            self._pipe_w = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=self.grace_s + 5)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
            self.watchdog = None
        return result


def watch(pgid: int, fd: int, grace_s: float, poll_s: float = 1.0) -> str:
    """The watchdog's loop: wait until the starter is gone (EOF on `fd`, at once) or the group has ended
    (checked every `poll_s`); in the first case terminate the group. Returns what `terminate_group` did,
    or `finished`."""
    while True:
        readable, _, _ = select.select([fd], [], [], poll_s)
        if readable:
            # EOF: the starter closed its end (close()) or died (the kernel closed it).
            return terminate_group(pgid, grace_s)
        # Zombies count here: the step's zombie lasts until its starter reaps it and closes the pipe.
        if not _group_exists(pgid):
            return "finished"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # only the watchdog's own command line: not paid by the DAG files importing StepProcess

    parser = argparse.ArgumentParser(prog="python -m llmops.process", description="watchdog of a step process group")
    parser.add_argument("--pgid", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_S)
    args = parser.parse_args(argv)
    # The starter may be killed with its terminal's or its group's signals; the watchdog must outlive it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(args.pgid, args.fd, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
