"""`llmops bench s3`: time and peak memory of a large S3 round trip through `llmops.storage`.

A moto S3 server runs in its own process on 127.0.0.1 (moto is a dev dependency), so the two peaks are
measured apart: this process's (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, the high-water mark of the
whole run, and its resident size just before the transfers) and the server's (`VmHWM` of its process).
A file of random bytes is written, uploaded with `storage.upload_file`, downloaded with
`storage.download_file` and its sha256 compared. moto keeps objects in memory, so its peak grows with
the object; ours should not.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.exceptions import ConfigError, StorageError

BUCKET = "llmops-bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int | str, field: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status in KiB (None off Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _start_moto(port: int) -> subprocess.Popen:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise ConfigError(
            "llmops bench s3 needs moto's server (a dev dependency): pip install 'moto[server]' "
            "(or install the project with its dev extra)"
        ) from None
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StorageError(f"the moto server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise StorageError(f"the moto server did not listen on 127.0.0.1:{port} within 60 s")


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(storage.MiB, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def run_s3_bench(size_mb: int, workdir: str | None = None) -> dict[str, Any]:
    """Round-trip `size_mb` MiB through a local moto server; return times, throughput and peak memory."""
    import boto3

    if size_mb < 1:
        raise ConfigError(f"--size-mb {size_mb} must be at least 1")
    size = size_mb * storage.MiB
    work = Path(tempfile.mkdtemp(prefix="llmops-s3-bench-", dir=workdir))
    need = 2 * size + 64 * storage.MiB
    if shutil.disk_usage(work).free < need:
        shutil.rmtree(work, ignore_errors=True)
        raise ConfigError(f"--size-mb {size_mb}: {work} has less than {need // storage.MiB} MiB free for the "
                          "source and the downloaded copy; pass --workdir on a larger disk")
    port = _free_port()
    server = _start_moto(port)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
            aws_secret_access_key="bench", config=storage.client_config(),
        )
        src, back = work / "object.bin", work / "download" / "object.bin"
        started = time.perf_counter()
        want = _write_random(src, size)
        write_s = time.perf_counter() - started
        uri = f"s3://{BUCKET}/bench/object.bin"
        with storage.using_client(client):
            client.create_bucket(Bucket=BUCKET)
            rss_before_kib = _status_kib("self", "VmRSS")
            t0 = time.perf_counter()
            storage.upload_file(src, uri)
            upload_s = time.perf_counter() - t0
            (info,) = storage.list_files(uri)
            t0 = time.perf_counter()
            storage.download_file(uri, back)
            download_s = time.perf_counter() - t0
        got = storage.sha256(str(back))
        wall_s = time.perf_counter() - started
        peak_self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        server_peak_kib = _status_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    if server_peak_kib is None:  # not Linux: the largest reaped child's peak
        server_peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if got != want:
        raise StorageError(f"round trip of {size_mb} MiB changed the bytes: sha256 {want} sent, {got} received")
    parts = info.version.rsplit("-", 1)[1] if "-" in info.version else "1"
    return {
        "size_mb": size_mb,
        "sha256_match": True,
        "parts": int(parts),
        "multipart_threshold_mb": storage.MULTIPART_THRESHOLD // storage.MiB,
        "multipart_chunksize_mb": storage.MULTIPART_CHUNKSIZE // storage.MiB,
        "max_concurrency": storage.MAX_CONCURRENCY,
        "write_source_s": round(write_s, 2),
        "upload_s": round(upload_s, 2),
        "download_s": round(download_s, 2),
        "upload_mb_per_s": round(size_mb / upload_s, 1),
        "download_mb_per_s": round(size_mb / download_s, 1),
        "wall_s": round(wall_s, 2),
        "rss_before_transfers_mb": _mib(rss_before_kib),
        "peak_rss_mb": _mib(peak_self_kib),
        "moto_server_peak_rss_mb": _mib(server_peak_kib),
        "note": "peak_rss_mb is this process's high-water mark over the whole run (imports, the file write, "
        "both transfers); moto keeps objects in memory, so its server's peak grows with the object",
    }
