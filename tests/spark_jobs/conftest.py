"""One local SparkSession for every Spark test of the session (JVM start-up costs seconds).

It starts after the moto S3 server so that the Python workers, forked from a daemon that inherits the
JVM's environment, see the same AWS variables as the tests.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark(s3_server):
    from llmops.rag.job import spark_session

    session, created = spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    if created:
        session.stop()
