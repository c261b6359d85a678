"""One storage abstraction for local folders and S3.

Every step reads and writes through these functions, so the same code runs on `./.llmops/...` in local
mode and on `s3://bucket/prefix` in production (and against moto's server in tests). Local writes are
atomic (temporary file + rename): a killed step never leaves a half-written file under its final name.

S3 settings come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`) plus `LLMOPS_S3_ENDPOINT_URL` (or `AWS_ENDPOINT_URL`) for MinIO or moto.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from llmops.exceptions import StorageError

SUPPORTED_SCHEMES = ("", "file", "s3")
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


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def s3_client():
    endpoint = os.environ.get("LLMOPS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    return _s3_client(endpoint)


def _s3_call(uri: str, action: str, fn, *args, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(*args, **kwargs)
    except NoCredentialsError:
        raise StorageError(
            f"cannot {action} {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (in pods: the secret named by LLMOPS_S3_CREDENTIALS_SECRET)"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise FileNotFoundError(uri) from None
        if code == "NoSuchBucket":
            raise StorageError(f"cannot {action} {uri}: bucket does not exist") from None
        raise StorageError(f"cannot {action} {uri}: {code or exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot {action} {uri}: {exc}") from None


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
        bucket, key = _split_s3(uri)
        _s3_call(uri, "write", s3_client().put_object, Bucket=bucket, Key=key, Body=data)
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Copy a local folder to a folder or prefix (files replaced one by one, atomically each)."""
    src = Path(src)
    if not is_s3(uri):
        dest = local_path(uri)
        if dest.resolve() == src.resolve():
            return
        dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            write_bytes(join(uri, p.relative_to(src).as_posix()), p.read_bytes())


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
        target = dest / f.uri[len(base):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_bytes(f.uri))
    return dest


def iter_jsonl(uri: str) -> Iterator[str]:
    """Lines of a text file, without their line ends."""
    yield from read_text(uri).splitlines()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
