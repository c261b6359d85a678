"""
### Landing sensor: new documents for the RAG corpus

Every 5 minutes: wait for documents under the landing location (`[llmops] landing_uri`, default
`<data_root>/landing`), compare them with the last preprocessing manifest (listed version first,
then sha256 of the bytes), and when something is **new, changed or deleted** emit the
`llmops_landing` asset, which schedules `llmops_preprocess`. Nothing new: the run is skipped.

- `s3://` landing: the amazon provider's `S3KeySensor` (deferrable, connection `[llmops] aws_conn_id`);
- a local folder: a folder sensor that needs no Airflow connection.

Asset extra: `documents` (new + changed), `new`, `changed`, `deleted`, `landing_uri`.
"""

import pendulum
from airflow.sdk import DAG

from llmops_operators import airflow_settings
from llmops_operators.assets import LANDING
from llmops_operators.rag import LandingChangesOperator, landing_sensor
from llmops_operators.schedules import cron_schedule

settings = airflow_settings()

with DAG(
    dag_id="llmops_data_sensor",
    schedule=cron_schedule(settings.rag.landing_schedule),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["llmops", "rag"],
):
    wait = landing_sensor(task_id="wait_for_documents", settings=settings)
    detect = LandingChangesOperator(
        task_id="detect_changes",
        landing_uri=settings.landing,
        output_uri=settings.processed,
        max_document_mb=settings.rag.max_document_mb,
        outlets=[LANDING],
    )
    wait >> detect
