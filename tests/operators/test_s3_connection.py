"""S3 inside Airflow tasks uses the `aws_conn_id` connection (credentials and endpoint), not the environment.

The connection is an `AIRFLOW_CONN_<ID>` variable pointing at the moto server (endpoint in its extra); the
environment has no AWS credentials and its endpoint is a closed port, so a request that reaches moto can
only have used the connection.
"""

from __future__ import annotations

import json

import pytest

from llmops import storage
from llmops.exceptions import StorageError

CONN_ID = "llmops_test_s3"
CLOSED_PORT = "http://127.0.0.1:9"

pytestmark = pytest.mark.s3


@pytest.fixture
def connection_only(s3_server, s3_bucket, monkeypatch, tmp_path):
    """The connection reaches moto; the environment chain has nothing that could."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
        "conn_type": "aws",
        "login": "conn-key-id",
        "password": "conn-secret",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("LLMOPS_S3_ENDPOINT_URL", CLOSED_PORT)
    monkeypatch.setenv("LLMOPS_AWS_CONN_ID", CONN_ID)
    return s3_bucket


def test_client_from_the_connection_reaches_its_endpoint_with_its_credentials(connection_only):
    from llmops_operators.s3 import connection_s3_client

    client = connection_s3_client(CONN_ID)
    assert client.meta.endpoint_url.startswith("http://127.0.0.1:") and client.meta.endpoint_url != CLOSED_PORT
    assert client._request_signer._credentials.access_key == "conn-key-id"
    client.put_object(Bucket=connection_only, Key="probe.txt", Body=b"hi")
    assert client.get_object(Bucket=connection_only, Key="probe.txt")["Body"].read() == b"hi"


def test_storage_inside_the_block_uses_the_connection_outside_it_cannot(connection_only):
    from llmops_operators.s3 import aws_connection

    uri = f"s3://{connection_only}/state/ledger.jsonl"
    with aws_connection(CONN_ID):
        storage.write_text(uri, "{}\n")
        assert storage.read_text(uri) == "{}\n"
    with pytest.raises(StorageError):
        storage.read_text(uri)


def test_a_missing_connection_falls_back_to_the_environment_chain(s3_server, s3_bucket, monkeypatch):
    from llmops_operators.s3 import aws_connection, connection_s3_client

    assert connection_s3_client("no_such_connection") is None
    with aws_connection("no_such_connection"):
        storage.write_text(f"s3://{s3_bucket}/env.txt", "env")  # the moto credentials of the environment
    assert storage.read_text(f"s3://{s3_bucket}/env.txt") == "env"


def test_detect_changes_reads_the_landing_through_the_connection(connection_only):
    """The sensor DAG's detect_changes runs in the worker: its listing and reads go through the connection."""
    from llmops_operators.assets import LANDING
    from llmops_operators.rag import LandingChangesOperator
    from llmops_operators.s3 import aws_connection

    landing = f"s3://{connection_only}/landing"
    with aws_connection(CONN_ID):
        storage.write_text(f"{landing}/a.md", "# A\n\ntext\n")
    op = LandingChangesOperator(task_id="detect", landing_uri=landing, output_uri=f"s3://{connection_only}/processed",
                                outlets=[LANDING])
    events = _Events()
    result = op.execute({"outlet_events": events})
    assert result["new"] == 1 and events[LANDING].extra["documents"] == 1


class _Events(dict):
    def __missing__(self, key):
        self[key] = type("Event", (), {"extra": None})()
        return self[key]
