"""One writer per run folder: a lease on a training output, a preprocessing output or a dataset root.

A step that writes a folder first takes the folder's lease, a small JSON object at `<folder>/.lease`
naming its holder: host, pid (with the process's start time, so a reused pid is not mistaken for the
holder), start time, last heartbeat, a random owner token and the command. While it holds the lease a
daemon thread renews the heartbeat every `lease_heartbeat_seconds`, and the writer calls `verify()`
before each durable write (a checkpoint, the final outputs), which fails with `LeaseLost` if another
writer has taken the lease over meanwhile.

- **Local folder**: an exclusive `fcntl.flock` on `<folder>/.lease`, which the kernel drops when the
  holder dies, however it dies; the JSON body is for humans and for staleness. Acquisition decisions are
  serialized by a short lock on `<folder>/.lease.guard`, so taking over a stale lease (unlink and
  recreate the file) cannot race with another acquirer.
- **S3 prefix**: a conditional create (`PutObject` with `If-None-Match: *`); the heartbeat and the
  release are conditional overwrites (`If-Match` on the holder's ETag), and `verify()` is one `HEAD`
  comparing that ETag. The lease's age is measured on the server's clock (`Date` minus `Last-Modified`),
  so writers with skewed clocks agree on staleness.

A second writer waits up to `lease_wait_seconds`, then fails with `LeaseHeld` naming the holder. A
stale lease is taken over, with a warning naming the previous holder: its holder's process is gone
(same host), or its heartbeat is older than `lease_stale_seconds` (any host: a lost pod or machine).
A lease released cleanly is simply taken. So a retry of a task whose first try died waits for that
try's step to stop (see `llmops.process`), then resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llmops import storage
from llmops.exceptions import LeaseHeld, LeaseLost, StorageError
from llmops.process import process_alive, process_start_ticks

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    from llmops.settings import Settings

log = logging.getLogger(__name__)

LEASE_FILE = ".lease"
GUARD_FILE = ".lease.guard"
POLL_S = 0.25
"""How often a waiting writer tries again."""


def _iso(ts: float | None) -> str:
    return "?" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    """What a lease says about its holder (the JSON body of `.lease`)."""

    host: str
    pid: int
    pid_start: int | None
    token: str
    started_at: float
    heartbeat_at: float
    what: str
    command: str
    released_at: float | None = None

    @classmethod
    def me(cls, what: str) -> Holder:
        now = time.time()
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_start=process_start_ticks(os.getpid()),
            token=uuid.uuid4().hex,
            started_at=now,
            heartbeat_at=now,
            what=what,
            command=" ".join(sys.argv)[:300],
        )

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder in a lease body; None for an empty or unreadable body (being written, or foreign)."""
        try:
            raw = json.loads(data)
            return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            return None

    def describe(self, age_s: float | None = None) -> str:
        age = f", last heartbeat {age_s:.0f} s ago" if age_s is not None else ""
        return (f"host {self.host}, pid {self.pid}, since {_iso(self.started_at)}{age} "
                f"({self.what}: {self.command!r})")

    def dead_here(self) -> bool:
        """Its process is gone, as far as this host can tell (only a holder on this host can be checked)."""
        return self.host == socket.gethostname() and not process_alive(self.pid, self.pid_start)


def _stale_reason(holder: Holder | None, age_s: float, stale_s: float) -> str | None:
    """Why a lease may be taken over, or None while its holder counts as alive. An unreadable body is a
    holder too (one being written, or a foreign object): only its age frees it."""
    if holder is None:
        return f"its body is unreadable and unchanged for {age_s:.0f} s" if age_s > stale_s else None
    if holder.dead_here():
        return f"its process {holder.pid} on this host is gone"
    if age_s > stale_s:
        return f"no heartbeat for {age_s:.0f} s (lease_stale_seconds = {stale_s:g})"
    return None


# --- backends ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    """One try at taking a lease: taken (with the stale holder replaced, if any), or who holds it."""

    taken: bool
    holder: Holder | None = None
    age_s: float | None = None
    replaced: Holder | None = None
    reason: str | None = None


class _LocalLock:
    def __init__(self, folder: str) -> None:
        self.dir = storage.local_path(folder)
        self.path = self.dir / LEASE_FILE
        self.fd: int | None = None
        self.inode: int | None = None

    @contextmanager
    def _guard(self) -> Generator[None, None, None]:
        import fcntl

        fd = os.open(self.dir / GUARD_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> tuple[Holder | None, float]:
        data = os.pread(fd, 65536, 0)
        holder = Holder.parse(data)
        mtime = os.fstat(fd).st_mtime
        beat = max(mtime, holder.heartbeat_at) if holder and holder.heartbeat_at else mtime
        return holder, max(0.0, time.time() - beat)

    def try_take(self, me: Holder, stale_s: float) -> _Attempt:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with self._guard():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder, age = self._read(fd)
                reason = _stale_reason(holder, age, stale_s)
                if reason is None:
                    os.close(fd)
                    return _Attempt(False, holder, age)
                # Stale while its lock is still held: a hung holder, or a child that inherited the lock.
                # A new file (the old holder keeps a lock on an unlinked inode and fails its next verify()).
                os.unlink(self.path)
                os.close(fd)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                replaced = holder
            else:
                holder, age = self._read(fd)
                # The lock was free: a body not marked released is a holder that died holding it.
                replaced = holder if holder is not None and holder.released_at is None else None
                reason = (_stale_reason(replaced, age, stale_s) or "its lock was free (it exited without releasing)"
                          if replaced else None)
            self.fd = fd
            self.inode = os.fstat(fd).st_ino
            self._write(me)
            return _Attempt(True, replaced=replaced, age_s=age, reason=reason)

    def _write(self, holder: Holder) -> None:
        data = holder.to_bytes()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def _still_mine(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            return False

    def renew(self, me: Holder) -> None:
        if not self._still_mine():
            raise LeaseLost(self._lost_message())
        self._write(me)

    def verify(self) -> None:
        if not self._still_mine():
            raise LeaseLost(self._lost_message())

    def _lost_message(self) -> str:
        try:
            holder = Holder.parse(self.path.read_bytes())
        except FileNotFoundError:
            holder = None
        now = f" it is now held by {holder.describe()}" if holder else ""
        return f"the lease on {self.dir} was taken over by another writer;{now}"

    def release(self, me: Holder) -> None:
        if self.fd is None:
            return
        try:
            if self._still_mine():
                self._write(replace(me, released_at=time.time()))
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None


class _S3Lock:
    def __init__(self, folder: str) -> None:
        uri = storage.join(folder, LEASE_FILE)
        parsed = urlparse(uri)
        self.uri = uri
        self.bucket, self.key = parsed.netloc, parsed.path.lstrip("/")
        self.etag: str | None = None

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _call(self, action: str, fn, **kwargs) -> dict[str, Any]:
        """One S3 call; a failed precondition or a conflict comes back as {"failed": code}."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            code = self._code(exc)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404",
                        "NotFound"):
                return {"failed": code}
            raise StorageError(f"cannot {action} the lease {self.uri}: {code or exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} the lease {self.uri}: {exc}") from None

    def _read(self) -> tuple[Holder | None, float, str] | None:
        """The holder, the lease's age on the server's clock and its ETag; None when there is no lease."""
        resp = self._call("read", storage.s3_client().get_object)
        if "failed" in resp:
            return None
        holder = Holder.parse(resp["Body"].read())
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
        age = max(0.0, now - resp["LastModified"].timestamp())
        return holder, age, resp["ETag"]

    def try_take(self, me: Holder, stale_s: float) -> _Attempt:
        client = storage.s3_client()
        resp = self._call("create", client.put_object, Body=me.to_bytes(), IfNoneMatch="*")
        if "failed" not in resp:
            self.etag = resp["ETag"]
            return _Attempt(True)
        current = self._read()
        if current is None:
            return _Attempt(False)  # released and deleted in between: try again
        holder, age, etag = current
        if holder is not None and holder.released_at is not None:
            reason, replaced = None, None
        else:
            reason = _stale_reason(holder, age, stale_s)
            if reason is None:
                return _Attempt(False, holder, age)
            replaced = holder
        resp = self._call("take over", client.put_object, Body=me.to_bytes(), IfMatch=etag)
        if "failed" in resp:
            return _Attempt(False, holder, age)  # another writer was faster
        self.etag = resp["ETag"]
        return _Attempt(True, replaced=replaced, age_s=age, reason=reason)

    def renew(self, me: Holder) -> None:
        resp = self._call("renew", storage.s3_client().put_object, Body=me.to_bytes(), IfMatch=self.etag)
        if "failed" in resp:
            raise LeaseLost(self._lost_message())
        self.etag = resp["ETag"]

    def verify(self) -> None:
        resp = self._call("check", storage.s3_client().head_object)
        if "failed" in resp or resp.get("ETag") != self.etag:
            raise LeaseLost(self._lost_message())

    def _lost_message(self) -> str:
        current = self._read()
        now = f" it is now held by {current[0].describe(current[1])}" if current and current[0] else ""
        return f"the lease {self.uri} was taken over by another writer;{now}"

    def release(self, me: Holder) -> None:
        if self.etag is None:
            return
        # Overwrite (not delete) only if still ours: the next writer sees a clean release, humans the last holder.
        self._call("release", storage.s3_client().put_object,
                   Body=replace(me, released_at=time.time()).to_bytes(), IfMatch=self.etag)
        self.etag = None


# --- the lease ---------------------------------------------------------------------------------------------


class Lease:
    """The lease on one folder. `acquire()` (or `with Lease(...)`) waits up to `wait_s`, then raises
    `LeaseHeld`; `verify()` raises `LeaseLost` once another writer has taken it over; `release()`."""

    def __init__(self, folder: str, what: str, *, wait_s: float, stale_s: float, heartbeat_s: float) -> None:
        storage.check_uri(folder, what)
        self.folder = str(folder)
        self.what = what
        self.wait_s = wait_s
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        self._backend: _LocalLock | _S3Lock = _S3Lock(folder) if storage.is_s3(folder) else _LocalLock(folder)
        self._me: Holder | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None
        self.replaced: Holder | None = None
        self.waited_s = 0.0
        self.verify_seconds = 0.0
        self.verify_count = 0

    @property
    def holder(self) -> Holder | None:
        return self._me

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> Lease:
        """Take the lease, waiting up to `wait_s`; `cancelled()` true (a SIGTERM arrived) ends the wait."""
        me = Holder.me(self.what)
        started = time.monotonic()
        next_note = 0.0
        while True:
            attempt = self._backend.try_take(me, self.stale_s)
            if attempt.taken:
                break
            waited = time.monotonic() - started
            held_by = (attempt.holder.describe(attempt.age_s) if attempt.holder
                       else "a writer whose lease body could not be read yet")
            if cancelled is not None and cancelled():
                raise LeaseHeld(f"stopped while waiting for {self.what} {self.folder}, held by {held_by}")
            if waited >= self.wait_s:
                raise LeaseHeld(
                    f"{self.what} {self.folder} is being written by another writer: {held_by}. Waited "
                    f"{waited:.0f} s (lease_wait_seconds = {self.wait_s:g}). Let it finish or stop it; a lease whose "
                    f"holder is gone is taken over (after lease_stale_seconds = {self.stale_s:g} without heartbeat "
                    "when the holder is on another host)"
                )
            if waited >= next_note:
                log.warning("%s %s is held by %s: waiting up to %.0f s more", self.what, self.folder, held_by,
                            self.wait_s - waited)
                next_note = waited + 30
            time.sleep(min(POLL_S, max(0.0, self.wait_s - waited)))
        self.waited_s = time.monotonic() - started
        self._me = me
        self.replaced = attempt.replaced
        if attempt.replaced is not None:
            log.warning("Took over the lease on %s %s from %s: %s", self.what, self.folder,
                        attempt.replaced.describe(attempt.age_s), attempt.reason)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat {self.folder}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                if self._me is None or self.lost:
                    return
                self._me = replace(self._me, heartbeat_at=time.time())
                try:
                    self._backend.renew(self._me)
                except LeaseLost as exc:
                    self.lost = str(exc)
                    log.error("%s", exc)
                    return
                except (OSError, StorageError) as exc:
                    # Transient (a network blip): the next beat tries again; staleness allows a few misses.
                    log.warning("Lease heartbeat on %s failed: %s", self.folder, exc)

    def verify(self) -> None:
        """Raise `LeaseLost` unless this writer still holds the lease (call it before each durable write)."""
        started = time.perf_counter()
        try:
            with self._lock:
                if self._me is None:
                    raise LeaseLost(f"the lease on {self.folder} is not held")
                if self.lost:
                    raise LeaseLost(f"{self.lost}: this writer stops so that two never write at once")
                try:
                    self._backend.verify()
                except LeaseLost as exc:
                    self.lost = str(exc)
                    raise LeaseLost(f"{exc}: this writer stops so that two never write at once") from None
        finally:
            self.verify_seconds += time.perf_counter() - started
            self.verify_count += 1

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._me is not None:
                try:
                    self._backend.release(self._me)
                except (OSError, StorageError) as exc:
                    log.warning("Could not release the lease on %s (it goes stale instead): %s", self.folder, exc)
                self._me = None

    def __enter__(self) -> Lease:
        return self.acquire() if self._me is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease(folder: str, what: str, settings: Settings | None = None) -> Lease:
    """A lease on `folder` with the settings' wait, stale and heartbeat times (not acquired yet)."""
    if settings is None:
        from llmops.settings import load_settings

        settings = load_settings()
    return Lease(folder, what, wait_s=settings.storage.lease_wait_seconds, stale_s=settings.storage.lease_stale_seconds,
                 heartbeat_s=settings.storage.lease_heartbeat_seconds)


def _inside(child: str, parent: str) -> bool:
    return child.rstrip("/") == parent.rstrip("/") or child.startswith(parent.rstrip("/") + "/")


class Leases:
    """Several folders' leases held together, taken in a fixed order (no two writers deadlock); a folder
    inside another one in the list shares its lease."""

    def __init__(self, leases: Sequence[Lease]) -> None:
        self.leases = list(leases)

    @classmethod
    def of(cls, folders: Sequence[tuple[str, str]], settings: Settings | None = None) -> Leases:
        """`folders`: (folder, what) pairs."""
        roots: list[tuple[str, str]] = []
        for folder, what in sorted(folders, key=lambda f: len(f[0].rstrip("/"))):
            if not any(_inside(folder, root) for root, _ in roots):
                roots.append((folder, what))
        return cls([lease(folder, what, settings) for folder, what in sorted(roots)])

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> Leases:
        held: list[Lease] = []
        try:
            for item in self.leases:
                held.append(item.acquire(cancelled))
        except BaseException:
            for item in reversed(held):
                item.release()
            raise
        return self

    def verify(self) -> None:
        for item in self.leases:
            item.verify()

    def release(self) -> None:
        for item in reversed(self.leases):
            item.release()

    @property
    def verify_seconds(self) -> float:
        return sum(item.verify_seconds for item in self.leases)

    def __enter__(self) -> Leases:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(folder: str) -> Holder | None:
    """The lease body of a folder (held, released or stale), for humans and tests; None without one."""
    uri = storage.join(folder, LEASE_FILE)
    try:
        return Holder.parse(storage.read_bytes(uri))
    except FileNotFoundError:
        return None
