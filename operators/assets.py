"""The assets that connect the DAGs (data-aware scheduling).

    sensor --LANDING--> preprocess --CORPUS--> dataset --DATASET--> fine-tune
                                                  ^                    |
                                       drift --RETRAIN                 +--MODEL--> (deployment consumers)

Each producer declares the asset as an outlet and attaches small facts to the event's `extra`
(a snapshot id, a report URI, p-values); consumers read them from `triggering_asset_events`.

The URIs use an `x-` scheme: Airflow normalizes any other scheme through the providers' asset URI
handlers, and looking one up loads every installed provider's handler module (the amazon provider's
imports its S3 hook and boto3), which made each DAG file cost six times a trivial one to parse. `x-`
schemes are left as written (`airflow.sdk.definitions.asset._sanitize_uri`), so these stay plain names.
"""

from airflow.sdk import Asset

LANDING = Asset(name="llmops_landing", uri="x-llmops://landing")
"""New or changed documents found in the landing location. extra: `documents` (count), `landing_uri`."""

CORPUS = Asset(name="llmops_corpus", uri="x-llmops://corpus")
"""A new corpus snapshot (Parquet + vector store). extra: `snapshot_id`, `output_uri`, `chunks_total`."""

RETRAIN = Asset(name="llmops_retrain", uri="x-llmops://retrain")
"""Significant drift in inference traffic. extra: `report_uri`, `report_json_uri`, `p_value` (the
verdict's), `p_value_mmd`, `p_value_classifier`, `alpha`, `n_reference`, `n_current`, `mlflow_run_id`,
`created_at`."""

DATASET = Asset(name="llmops_dataset", uri="x-llmops://dataset")
"""A dataset build (the dataset DAG, on a corpus or drift event). extra: the build summary
(`dataset_uri`, `dataset_hash`, `snapshot_id`, `generator`, `rows_train`, `rows_eval`, `rows_eval_new`,
`items_generated`, `chunks_new`, `steered_by`, ...) and `trigger` (`corpus` or `drift`, with the drift
event's `report_uri` and p-values): the fine-tune DAG decides with them."""

MODEL = Asset(name="llmops_model", uri="x-llmops://model")
"""A model version promoted to champion. extra: `model_uri`, `version`."""
