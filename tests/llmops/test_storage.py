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
