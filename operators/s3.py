"""S3 inside Airflow tasks: the client comes from the Airflow connection, as the landing sensor's does.

    with aws_connection(settings.aws_conn_id):
        changes = pending_changes(landing_uri, output_uri)   # every llmops.storage S3 call uses the connection

The core (`llmops.storage`) never imports Airflow; it takes a client through `storage.using_client`. This
module builds that client from the `aws_conn_id` connection with the amazon provider's hook (credentials,
role assumption, region and `endpoint_url` from the connection's extra). Without such a connection, the
environment chain applies (`AWS_*` variables, instance profile, `LLMOPS_S3_ENDPOINT_URL`), as in the pods.
The client is built on the first S3 call, so a task that touches only local paths never imports the
amazon provider.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator
from typing import Any

from llmops import storage
from llmops_operators.base import airflow_settings


def connection_s3_client(conn_id: str | None) -> Any | None:
    """A boto3 S3 client from the Airflow connection `conn_id`, or None when it does not exist (or no id
    is given): the caller then uses the environment chain."""
    if not conn_id:
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=conn_id, config=storage.client_config())
    conn = hook.conn_config
    if not conn:  # no such connection: the hook logged "Unable to find AWS Connection ID ..."
        return None
    endpoint = conn.get_service_endpoint_url("s3")
    if endpoint or not storage.endpoint_url():
        return hook.get_conn()
    # A connection with credentials but no endpoint, and the environment names one (MinIO, moto).
    session = hook.get_session(region_name=hook.region_name)
    return session.client("s3", endpoint_url=storage.endpoint_url(), config=hook.config, verify=hook.verify)


def _client_or_environment(conn_id: str | None) -> Any:
    return connection_s3_client(conn_id) or storage.environment_s3_client()


@contextlib.contextmanager
def aws_connection(conn_id: str | None) -> Generator[None, None, None]:
    """Every `llmops.storage` S3 call in the block uses the S3 client of connection `conn_id` (built on
    the first call), or the environment chain when that connection does not exist."""
    with storage.using_client(lambda: _client_or_environment(conn_id)):
        yield


def uses_aws_connection(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an operator's `execute` or a `@task` function: the storage calls it makes use the
    connection named by the operator's settings (`self.settings.aws_conn_id`), else by the Airflow-side
    settings (`[llmops] aws_conn_id`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = (getattr(args[0], "settings", None) if args else None) or airflow_settings()
        with aws_connection(settings.storage.aws_conn_id):
            return fn(*args, **kwargs)

    return wrapper
