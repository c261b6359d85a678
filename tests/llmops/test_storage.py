import pytest

from llmops import storage
from llmops.exceptions import StorageError


def test_local_round_trip_and_listing(tmp_path):
    storage.write_text(str(tmp_path / "a" / "b.txt"), "hello")
    storage.write_bytes(f"file://{tmp_path}/c.bin", b"\x00\x01")
    files = storage.list_files(str(tmp_path))
    assert [f.uri.rsplit("/", 1)[-1] for f in files] == ["b.txt", "c.bin"]
    assert storage.read_text(str(tmp_path / "a" / "b.txt")) == "hello"
    assert storage.exists(str(tmp_path / "a"))
    storage.delete(str(tmp_path / "a"))
    assert not storage.exists(str(tmp_path / "a"))


def test_local_write_is_atomic_no_temp_left(tmp_path):
    storage.write_text(str(tmp_path / "x.json"), "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [("", "is empty"), ("gs://bucket/x", "unsupported scheme 'gs'"), ("s3:///nobucket", "names no bucket")],
)
def test_bad_uris_are_named(uri, fragment):
    with pytest.raises(StorageError, match=fragment):
        storage.check_uri(uri, "--input")


@pytest.mark.s3
def test_s3_round_trip(s3_bucket, tmp_path):
    base = f"s3://{s3_bucket}/prefix"
    storage.write_text(f"{base}/docs/one.md", "# one")
    storage.write_bytes(f"{base}/docs/two.bin", b"2")
    files = storage.list_files(f"{base}/docs")
    assert [f.uri for f in files] == [f"{base}/docs/one.md", f"{base}/docs/two.bin"]
    assert all(f.version for f in files)
    assert storage.read_text(f"{base}/docs/one.md") == "# one"
    assert storage.exists(f"{base}/docs")
    local = storage.download_dir(f"{base}/docs", tmp_path / "dl")
    assert (local / "one.md").read_text() == "# one"
    storage.upload_dir(local, f"{base}/copy")
    assert storage.read_text(f"{base}/copy/one.md") == "# one"
    storage.delete(f"{base}/docs")
    assert storage.list_files(f"{base}/docs") == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{base}/docs/one.md")


@pytest.mark.s3
def test_s3_missing_bucket_is_named(s3_server):
    with pytest.raises(StorageError, match="bucket does not exist"):
        storage.write_text("s3://no-such-bucket-llmops/x", "y")


def test_local_files_get_umask_mode(tmp_path):
    import os
    import stat

    storage.write_text(str(tmp_path / "m.txt"), "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "m.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_local_streamed_copies_are_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * (3 * storage.COPY_BUFFER + 5))
    storage.upload_file(src, str(tmp_path / "out" / "a.bin"))
    storage.download_file(str(tmp_path / "out" / "a.bin"), tmp_path / "back" / "a.bin")
    assert (tmp_path / "back" / "a.bin").read_bytes() == src.read_bytes()
    assert storage.sha256(str(src)) == storage.sha256_bytes(src.read_bytes())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"]


def test_failed_download_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.download_file(str(tmp_path / "missing.bin"), tmp_path / "dest" / "x.bin")
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.s3
def test_s3_multipart_round_trip_above_the_threshold(s3_bucket, tmp_path):
    """A file larger than the multipart threshold goes up in parts and comes back byte for byte."""
    import hashlib
    import os

    size = storage.MULTIPART_THRESHOLD + storage.MULTIPART_CHUNKSIZE // 2 + 7
    src = tmp_path / "shard.safetensors"
    with src.open("wb") as fh:
        for _ in range(size // storage.MiB):
            fh.write(os.urandom(storage.MiB))
        fh.write(os.urandom(size % storage.MiB))
    uri = f"s3://{s3_bucket}/models/m/shard.safetensors"
    storage.upload_file(src, uri)
    (info,) = storage.list_files(uri)
    # An S3 ETag of a multipart object is "<md5 of the part md5s>-<number of parts>".
    assert info.size == size and info.version.endswith("-2"), info
    back = storage.download_file(uri, tmp_path / "dl" / "shard.safetensors")
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    assert storage.sha256(str(back)) == want and storage.sha256(uri) == want
    # write_bytes of a large payload is a managed transfer too (one put_object stops at 5 GB).
    storage.write_bytes(f"{uri}.copy", src.read_bytes())
    assert storage.list_files(f"{uri}.copy")[0].version.endswith("-2")
    # Folders move file by file through the same transfers.
    storage.upload_dir(tmp_path / "dl", f"s3://{s3_bucket}/copy")
    local = storage.download_dir(f"s3://{s3_bucket}/copy", tmp_path / "dl2")
    assert storage.sha256(str(local / "shard.safetensors")) == want


@pytest.mark.s3
def test_using_client_replaces_the_environment_chain(s3_bucket, monkeypatch, tmp_path):
    """Inside the block the given client is used (built lazily, once); outside, the environment's."""
    import boto3

    built = []
    moto = storage.endpoint_url()

    def factory():
        built.append(1)
        return boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    with storage.using_client(factory):
        assert built == []  # nothing touched S3 yet
        storage.write_text(str(tmp_path / "local.txt"), "local")  # a local path builds nothing
        assert built == []
        # The environment now points at a closed port: only the block's client can reach moto.
        monkeypatch.setenv("LLMOPS_S3_ENDPOINT_URL", "http://127.0.0.1:9")
        storage.write_text(f"s3://{s3_bucket}/a.txt", "via the block's client")
        assert storage.read_text(f"s3://{s3_bucket}/a.txt") == "via the block's client"
    assert built == [1]
    with pytest.raises(StorageError):
        storage.read_text(f"s3://{s3_bucket}/a.txt")


@pytest.mark.s3
def test_s3_missing_object_download_is_not_found(s3_bucket, tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.download_file(f"s3://{s3_bucket}/nope.bin", tmp_path / "nope.bin")
    assert not (tmp_path / "nope.bin").exists() and list(tmp_path.iterdir()) == []
