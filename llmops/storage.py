"""One storage abstraction for local folders and S3.

Every step reads and writes through these functions, so the same code runs on `./.llmops/...` in local
mode and on `s3://bucket/prefix` in production (and against moto's server in tests). Local writes are
atomic (temporary file + rename): a killed step never leaves a half-written file under its final name.

S3 settings come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`) plus `LLMOPS_S3_ENDPOINT_URL` (or `AWS_ENDPOINT_URL`) for MinIO or moto. Code that
runs inside an Airflow worker gets its client from the Airflow connection instead: the operators wrap it
in `using_client(...)` (this module never imports Airflow).

Large objects move with boto3's managed transfers (`upload_file`, `download_file`, `upload_fileobj`,
`download_fileobj` with `TRANSFER`): multipart above `MULTIPART_THRESHOLD`, streamed part by part, so
memory stays bounded (about `MULTIPART_CHUNKSIZE * MAX_CONCURRENCY`) whatever the object size, and
objects above S3's 5 GB single-PUT limit (model shards) can be written. `read_bytes`/`write_bytes` are for
small objects (JSON, manifests, Parquet parts); folders and model files go through `upload_dir`,
`download_dir`, `upload_file` and `download_file`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from llmops.exceptions import StorageError

SUPPORTED_SCHEMES = ("", "file", "s3")
MiB = 1024 * 1024
MULTIPART_THRESHOLD = 16 * MiB
"""Objects at least this large are uploaded and downloaded in parts."""
MULTIPART_CHUNKSIZE = 16 * MiB
"""Size of one part (boto3 raises it for objects that would need more than S3's 10,000 parts)."""
MAX_CONCURRENCY = 4
"""Parts in flight at once, per transfer."""
COPY_BUFFER = 4 * MiB
"""Buffer of local streamed copies and of streamed hashing."""
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class FileInfo:
    """One object or file: its URI, size in bytes, and a cheap change marker (ETag or mtime+size)."""

    uri: str
    size: int
    version: str


def scheme(uri: str) -> str:
    parsed = urlparse(uri)
    # A Windows drive letter or a bare path has no real scheme.
    return parsed.scheme if len(parsed.scheme) > 1 else ""


def check_uri(uri: str, what: str = "URI") -> str:
    """Fail early, naming the input, for an empty URI or an unsupported scheme."""
    if not uri or not str(uri).strip():
        raise StorageError(f"{what} is empty: give a folder path or an s3://bucket/prefix URI")
    s = scheme(str(uri))
    if s not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"{what} {uri!r} has unsupported scheme {s!r}: use a local path, file:// or s3://"
        )
    if s == "s3" and not urlparse(uri).netloc:
        raise StorageError(f"{what} {uri!r} names no bucket: use s3://bucket/prefix")
    return str(uri)


def is_s3(uri: str) -> bool:
    return scheme(uri) == "s3"


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (plain path or file://)."""
    if scheme(uri) == "file":
        return Path(urlparse(uri).path)
    if scheme(uri):
        raise StorageError(f"{uri!r} is not a local path")
    return Path(uri)


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def client_config():
    """The botocore config of every S3 client of the project (retries with backoff)."""
    from botocore.config import Config

    return Config(retries={"max_attempts": 5, "mode": "standard"})


def endpoint_url() -> str | None:
    """The S3 endpoint of the environment chain: `LLMOPS_S3_ENDPOINT_URL`, else `AWS_ENDPOINT_URL`."""
    from llmops.settings import env_value

    return env_value("s3_endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None, config=client_config())


class _ClientSlot:
    """A client given to `using_client`, or a function that builds it on the first S3 call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._built = not (callable(client) and not hasattr(client, "meta"))  # boto3 clients have .meta

    def get(self) -> Any:
        if not self._built:
            self._client, self._built = self._client(), True
        return self._client


_CLIENT: contextvars.ContextVar[_ClientSlot | None] = contextvars.ContextVar("llmops_s3_client", default=None)


@contextlib.contextmanager
def using_client(client: Any) -> Generator[None, None, None]:
    """Every S3 call in this block (this thread or task) uses `client` instead of the environment chain.

    `client` is a boto3 S3 client or a function returning one, called on the first S3 call in the block
    (so a block that touches only local paths never builds it). Airflow tasks pass the client built from
    the `aws_conn_id` connection (`llmops_operators.s3.aws_connection`).
    """
    token = _CLIENT.set(_ClientSlot(client))
    try:
        yield
    finally:
        _CLIENT.reset(token)


def s3_client():
    """The S3 client of the current block (`using_client`), else the environment chain's."""
    slot = _CLIENT.get()
    if slot is not None:
        return slot.get()
    return environment_s3_client()


def environment_s3_client():
    """The S3 client of the environment chain (`AWS_*` variables, instance profile, `endpoint_url()`)."""
    return _s3_client(endpoint_url())


def transfer_config():
    """boto3's managed-transfer settings: multipart above the threshold, a bounded number of parts in flight."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNKSIZE,
        max_concurrency=MAX_CONCURRENCY,
        use_threads=True,
    )


def _s3_call(uri: str, action: str, fn, *args, **kwargs):
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(*args, **kwargs)
    except NoCredentialsError:
        raise StorageError(
            f"cannot {action} {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (in pods: the secret named by LLMOPS_S3_CREDENTIALS_SECRET; in Airflow "
            "tasks: the connection named by the aws_conn_id setting)"
        ) from None
    except ClientError as exc:
        raise _client_error(uri, action, exc) from None
    except Boto3Error as exc:
        # upload_file wraps the ClientError in S3UploadFailedError (boto3/s3/transfer.py).
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ClientError):
            raise _client_error(uri, action, cause) from None
        raise StorageError(f"cannot {action} {uri}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot {action} {uri}: {exc}") from None


def _client_error(uri: str, action: str, exc: Any) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("NoSuchKey", "404", "NotFound"):
        return FileNotFoundError(uri)
    if code == "NoSuchBucket":
        return StorageError(f"cannot {action} {uri}: bucket does not exist")
    return StorageError(f"cannot {action} {uri}: {code or exc}")


def join(base: str, *parts: str) -> str:
    out = str(base).rstrip("/")
    for part in parts:
        out = f"{out}/{str(part).strip('/')}"
    return out


def exists(uri: str) -> bool:
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        try:
            _s3_call(uri, "read", client.head_object, Bucket=bucket, Key=key)
            return True
        except FileNotFoundError:
            # A "folder" exists when something lies under it.
            resp = _s3_call(
                uri, "list", client.list_objects_v2, Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1
            )
            return resp.get("KeyCount", 0) > 0
    return local_path(uri).exists()


def list_files(uri: str, recursive: bool = True) -> list[FileInfo]:
    """Every file under a folder or prefix (or the single file itself), sorted by URI."""
    check_uri(uri)
    out: list[FileInfo] = []
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        prefix = key.rstrip("/") + "/" if key else ""
        try:
            head = _s3_call(uri, "read", client.head_object, Bucket=bucket, Key=key) if key else None
        except FileNotFoundError:
            head = None
        if head is not None:
            return [FileInfo(uri, head["ContentLength"], head["ETag"].strip('"'))]
        paginator = client.get_paginator("list_objects_v2")
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        pages = _s3_call(uri, "list", lambda: list(paginator.paginate(**kwargs)))
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue
                out.append(FileInfo(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"')))
        return sorted(out, key=lambda f: f.uri)
    root = local_path(uri)
    if root.is_file():
        st = root.stat()
        return [FileInfo(str(root), st.st_size, f"{st.st_mtime_ns}-{st.st_size}")]
    if not root.exists():
        return []
    walker = root.rglob("*") if recursive else root.glob("*")
    for p in walker:
        if p.is_file() and not p.name.startswith(".tmp-"):
            st = p.stat()
            out.append(FileInfo(str(p), st.st_size, f"{st.st_mtime_ns}-{st.st_size}"))
    return sorted(out, key=lambda f: f.uri)


def read_bytes(uri: str) -> bytes:
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        resp = _s3_call(uri, "read", s3_client().get_object, Bucket=bucket, Key=key)
        return resp["Body"].read()
    try:
        return local_path(uri).read_bytes()
    except IsADirectoryError:
        raise StorageError(f"cannot read {uri}: it is a folder, not a file") from None
    except PermissionError:
        raise StorageError(f"cannot read {uri}: permission denied") from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    check_uri(uri)
    if is_s3(uri):
        if len(data) >= MULTIPART_THRESHOLD:
            # A managed transfer in parts: a single PUT stops at 5 GB.
            upload_fileobj(io.BytesIO(data), uri)
            return
        bucket, key = _split_s3(uri)
        _s3_call(uri, "write", s3_client().put_object, Bucket=bucket, Key=key, Body=data)
        return
    _atomic_write(local_path(uri), lambda fh: fh.write(data))


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a local file through `write(fh)` into a temporary file beside it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upload_fileobj(fileobj: IO[bytes], uri: str) -> None:
    """Stream a readable binary file object to a URI (S3: a managed multipart transfer)."""
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        _s3_call(uri, "write", client.upload_fileobj, fileobj, bucket, key, Config=transfer_config())
        return
    _atomic_write(local_path(uri), lambda fh: shutil.copyfileobj(fileobj, fh, COPY_BUFFER))


def download_fileobj(uri: str, fileobj: IO[bytes]) -> None:
    """Stream an object into a writable binary file object (S3: ranged parts; a seekable file takes
    them in parallel)."""
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        _s3_call(uri, "read", client.download_fileobj, bucket, key, fileobj, Config=transfer_config())
        return
    try:
        with local_path(uri).open("rb") as src:
            shutil.copyfileobj(src, fileobj, COPY_BUFFER)
    except IsADirectoryError:
        raise StorageError(f"cannot read {uri}: it is a folder, not a file") from None


def upload_file(path: str | Path, uri: str) -> None:
    """Copy a local file to a URI without holding it in memory (S3: multipart above the threshold;
    local: an atomic streamed copy)."""
    check_uri(uri)
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"cannot upload {path}: not a file")
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        _s3_call(uri, "write", client.upload_file, str(path), bucket, key, Config=transfer_config())
        return
    dest = local_path(uri)
    if dest.exists() and dest.resolve() == path.resolve():
        return
    with path.open("rb") as src:
        _atomic_write(dest, lambda fh: shutil.copyfileobj(src, fh, COPY_BUFFER))


def download_file(uri: str, path: str | Path) -> Path:
    """Copy an object to a local file without holding it in memory; the file appears under its name only
    once complete (temporary file + rename). Returns the path."""
    check_uri(uri)
    path = Path(path)
    if not is_s3(uri) and local_path(uri).resolve() == path.resolve():
        return path
    _atomic_write(path, lambda fh: download_fileobj(uri, fh))
    return path


def iter_chunks(uri: str, size: int = COPY_BUFFER) -> Iterator[bytes]:
    """The bytes of an object in chunks of at most `size`, streamed (for hashing large files)."""
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        resp = _s3_call(uri, "read", s3_client().get_object, Bucket=bucket, Key=key)
        body = resp["Body"]
        try:
            yield from body.iter_chunks(size)
        finally:
            body.close()
        return
    try:
        with local_path(uri).open("rb") as fh:
            while chunk := fh.read(size):
                yield chunk
    except IsADirectoryError:
        raise StorageError(f"cannot read {uri}: it is a folder, not a file") from None


def sha256(uri: str) -> str:
    """sha256 hex digest of an object's bytes, streamed."""
    digest = hashlib.sha256()
    for chunk in iter_chunks(uri):
        digest.update(chunk)
    return digest.hexdigest()


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def delete(uri: str) -> None:
    """Delete a file or everything under a folder/prefix; a missing target is not an error."""
    check_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        keys = [_split_s3(f.uri)[1] for f in list_files(uri)]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            _s3_call(uri, "delete", client.delete_objects, Bucket=bucket, Delete={"Objects": batch})
        return
    path = local_path(uri)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def upload_dir(src: Path, uri: str) -> None:
    """Copy a local folder to a folder or prefix (files replaced one by one, atomically each, streamed)."""
    src = Path(src)
    if not is_s3(uri):
        dest = local_path(uri)
        if dest.resolve() == src.resolve():
            return
        dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            upload_file(p, join(uri, p.relative_to(src).as_posix()))


def download_dir(uri: str, dest: Path) -> Path:
    """Copy a folder or prefix to a local folder and return it (a local URI is returned as is)."""
    if not is_s3(uri):
        return local_path(uri)
    dest = Path(dest)
    base = uri.rstrip("/") + "/"
    files = list_files(uri)
    if not files:
        raise StorageError(f"nothing found under {uri}")
    for f in files:
        download_file(f.uri, dest / f.uri[len(base):])
    return dest


def iter_jsonl(uri: str) -> Iterator[str]:
    """Lines of a text file, without their line ends."""
    yield from read_text(uri).splitlines()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
