"""Wrong URIs, missing credentials and bad configs fail before any work, with a message naming them."""

from __future__ import annotations

import pytest

from llmops import storage
from llmops.exceptions import ConfigError, PreprocessError, StorageError
from llmops.rag.config import PreprocessConfig
from llmops.rag.job import check_inputs
from llmops.settings import load_settings


def config(**kw) -> PreprocessConfig:
    return PreprocessConfig.from_settings(load_settings(environ={}), **kw)


def test_missing_input_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(StorageError, match=f"--input {missing} does not exist"):
        check_inputs(config(input_uri=str(missing), output_uri=str(tmp_path / "out")))


def test_empty_input_is_refused_unless_allowed(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(PreprocessError, match="holds no documents"):
        check_inputs(config(input_uri=str(tmp_path / "in"), output_uri=str(tmp_path / "out")))
    assert check_inputs(config(input_uri=str(tmp_path / "in"), output_uri=str(tmp_path / "out"), allow_empty=True)) == []


def test_bad_scheme_chunking_and_store_are_named(tmp_path):
    with pytest.raises(StorageError, match="'gs://b/x' has unsupported scheme"):
        config(input_uri="gs://b/x", output_uri=str(tmp_path))
    with pytest.raises(ConfigError, match="chunk_overlap"):
        config(input_uri=str(tmp_path), output_uri=str(tmp_path), chunk_size=64, chunk_overlap=64)
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ConfigError, match="encodes at most 254 tokens"):
        check_inputs(config(input_uri=str(tmp_path), output_uri=str(tmp_path / "o"), chunk_size=300))
    with pytest.raises(ConfigError, match="must end in .db"):
        check_inputs(config(input_uri=str(tmp_path), output_uri=str(tmp_path / "o"), vector_store_uri=str(tmp_path / "x")))
    with pytest.raises(ConfigError, match="vector_store_uri is required"):
        check_inputs(config(input_uri=str(tmp_path), output_uri="s3://bucket/out"))


@pytest.mark.s3
def test_missing_bucket_is_named(s3_bucket, tmp_path):
    storage.write_text(f"s3://{s3_bucket}/in/a.txt", "hello")
    with pytest.raises(StorageError, match="--output s3://no-such-bucket-x/out: .*bucket does not exist"):
        check_inputs(config(input_uri=f"s3://{s3_bucket}/in", output_uri="s3://no-such-bucket-x/out",
                            vector_store_uri=str(tmp_path / "m.db")))
    with pytest.raises(StorageError, match="--input s3://no-such-bucket-y/in: .*bucket does not exist"):
        check_inputs(config(input_uri="s3://no-such-bucket-y/in", output_uri=str(tmp_path)))


@pytest.mark.s3
def test_missing_credentials_are_named(s3_server, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    # boto3's default session caches the credentials it resolved for earlier tests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    storage._s3_client.cache_clear()
    try:
        with pytest.raises(StorageError, match="--input s3://docs/in: .*no AWS credentials found"):
            check_inputs(config(input_uri="s3://docs/in", output_uri=str(tmp_path)))
    finally:
        storage._s3_client.cache_clear()
