"""One writer per run folder: the lease on a local folder (flock) and on an S3 prefix (conditional writes
against moto's server), with real processes as the holders that die."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmops.exceptions import ConfigError, LeaseHeld, LeaseLost
from llmops.lease import LEASE_FILE, Lease, Leases, read_holder
from llmops.settings import load_settings


def make(folder, wait_s=0.0, stale_s=60.0, heartbeat_s=10.0, what="test output") -> Lease:
    return Lease(str(folder), what, wait_s=wait_s, stale_s=stale_s, heartbeat_s=heartbeat_s)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def folder(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "run")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/runs/run-1"


def test_a_second_writer_fails_naming_the_holder_then_takes_a_released_lease(folder, caplog):
    first = make(folder).acquire()
    try:
        with pytest.raises(LeaseHeld) as err:
            make(folder).acquire()
        msg = str(err.value)
        assert folder in msg and f"pid {os.getpid()}" in msg and "since " in msg and "host " in msg
        assert read_holder(folder).token == first.holder.token
    finally:
        first.release()
    assert read_holder(folder).released_at is not None
    with caplog.at_level(logging.WARNING, logger="llmops.lease"):
        second = make(folder).acquire()
    assert second.replaced is None and "Took over" not in caplog.text  # a clean release is no takeover
    second.verify()
    second.release()


def test_a_waiting_writer_proceeds_once_the_holder_releases(folder):
    first = make(folder).acquire()
    timer = threading.Timer(1.0, first.release)
    timer.start()
    try:
        started = time.monotonic()
        second = make(folder, wait_s=20).acquire()
        assert 0.9 <= time.monotonic() - started < 15
        assert read_holder(folder).token == second.holder.token
        second.release()
    finally:
        timer.join()


def test_heartbeats_keep_a_live_lease_from_going_stale(folder):
    first = make(folder, stale_s=1.0, heartbeat_s=0.2).acquire()
    try:
        with pytest.raises(LeaseHeld):
            make(folder, wait_s=2.5, stale_s=1.0).acquire()
        first.verify()
    finally:
        first.release()


def test_a_lease_without_heartbeat_is_taken_over_and_its_old_holder_stops(folder, caplog):
    # The first holder hangs: no heartbeat for longer than the second writer's stale time.
    first = make(folder, heartbeat_s=3600).acquire()
    with caplog.at_level(logging.WARNING, logger="llmops.lease"):
        second = make(folder, wait_s=15, stale_s=1.0).acquire()
    assert second.replaced.token == first.holder.token
    assert "Took over the lease" in caplog.text and "no heartbeat for" in caplog.text
    with pytest.raises(LeaseLost, match="taken over"):
        first.verify()
    first.release()  # must not touch the new holder's lease
    assert read_holder(folder).token == second.holder.token
    second.verify()
    second.release()


HOLD_SCRIPT = """
import sys, time
from llmops.lease import Lease
lease = Lease(sys.argv[1], "test output", wait_s=0, stale_s=3600, heartbeat_s=600).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_dead_holder_on_this_host_is_taken_over_at_once(folder, caplog):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, folder], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeld, match=f"pid {holder.pid}"):
            make(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Stale time one hour: only the holder's death on this host frees the lease.
    with caplog.at_level(logging.WARNING, logger="llmops.lease"):
        taken = make(folder, stale_s=3600).acquire()
    assert taken.replaced.pid == holder.pid
    assert f"pid {holder.pid}" in caplog.text and "is gone" in caplog.text
    taken.release()


def _contend(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        lease = make(folder).acquire()
    except LeaseHeld:
        results.put("held")
        return
    results.put("took")
    time.sleep(1.5)  # hold it while the others try
    lease.release()


def test_exactly_one_of_several_processes_takes_a_local_folder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(tmp_path / "run"), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["held", "held", "held", "took"]


def test_a_lock_held_by_a_hung_holder_is_replaced_on_disk(tmp_path):
    """Local takeover of a held flock: a new lease file; the old holder's lock is on the unlinked inode."""
    run = tmp_path / "run"
    first = make(run, heartbeat_s=3600).acquire()
    inode = (run / LEASE_FILE).stat().st_ino
    second = make(run, wait_s=10, stale_s=0.5).acquire()
    assert (run / LEASE_FILE).stat().st_ino != inode
    assert json.loads((run / LEASE_FILE).read_text())["token"] == second.holder.token
    with pytest.raises(LeaseLost):
        first.verify()
    with pytest.raises(LeaseHeld):
        make(run, stale_s=60).acquire()
    second.release()
    first.release()


def test_nested_folders_share_one_lease(tmp_path):
    settings = load_settings(lease_wait_seconds=0)
    both = Leases.of([(str(tmp_path / "run"), "training output"),
                      (str(tmp_path / "run" / "checkpoints"), "checkpoints")], settings)
    assert [item.folder for item in both.leases] == [str(tmp_path / "run")]
    apart = Leases.of([(str(tmp_path / "run"), "training output"), (str(tmp_path / "ckpt"), "checkpoints")],
                      settings)
    with apart:
        assert (tmp_path / "ckpt" / LEASE_FILE).exists() and (tmp_path / "run" / LEASE_FILE).exists()
        with pytest.raises(LeaseHeld, match="checkpoints"):
            Leases.of([(str(tmp_path / "ckpt"), "checkpoints")], settings).acquire()
    assert read_holder(str(tmp_path / "ckpt")).released_at is not None


def test_heartbeat_must_be_well_under_the_stale_time():
    with pytest.raises(ConfigError, match="lease_heartbeat_seconds"):
        load_settings(lease_heartbeat_seconds=60, lease_stale_seconds=100)


def test_the_lease_body_is_readable_json_naming_the_holder(tmp_path):
    lease = make(tmp_path / "run").acquire()
    body = json.loads(Path(tmp_path / "run" / LEASE_FILE).read_text())
    assert body["pid"] == os.getpid() and body["what"] == "test output" and body["heartbeat_at"] >= body["started_at"]
    lease.release()


def test_preprocessing_fails_naming_the_holder_of_its_output(tmp_path, monkeypatch):
    """The job takes its output's lease before anything else (no Spark starts here)."""
    from llmops.rag.config import PreprocessConfig
    from llmops.rag.job import run_preprocess

    out = tmp_path / "processed"
    (tmp_path / "corpus").mkdir()
    holder = make(out, what="preprocessing output").acquire()
    monkeypatch.setenv("LLMOPS_LEASE_WAIT_SECONDS", "0")
    cfg = PreprocessConfig.from_settings(load_settings(), input_uri=str(tmp_path / "corpus"), output_uri=str(out))
    try:
        with pytest.raises(LeaseHeld, match=f"preprocessing output {out} is being written .* pid {os.getpid()}"):
            run_preprocess(cfg)
    finally:
        holder.release()


def test_dataset_build_exits_75_naming_the_holder_of_its_root(tmp_path, monkeypatch, capsys):
    from llmops.cli import main

    root = tmp_path / "datasets"
    holder = make(root, what="dataset root").acquire()
    monkeypatch.setenv("LLMOPS_LEASE_WAIT_SECONDS", "0")
    try:
        assert main(["dataset", "build", "--corpus", str(tmp_path / "processed"), "--out", str(root)]) == 75
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert f"dataset root {root} is being written by another writer" in err and f"pid {os.getpid()}" in err
