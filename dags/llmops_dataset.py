"""
### Dataset: corpus snapshot -> versioned fine-tuning and evaluation rows

Runs when preprocessing publishes a new corpus snapshot (`llmops_corpus`), when the drift monitor asks
for a retrain (`llmops_retrain`), or by hand; one run at a time.

1. `dataset_inputs` reads what started the run: a corpus event, or a drift event and the steer file of
   its report (the traffic clusters farthest from the training data, with their nearest chunks).
2. `build` runs `llmops dataset build` (a subprocess locally, a pod on Kubernetes): items are generated
   only for new or changed chunks (cached by chunk and generator config), steered chunks first within the
   budget; train and eval are split by item, eval items sliced `new`/`retained`. An unchanged corpus gives
   the same dataset hash and writes nothing.
3. `publish_dataset` emits `llmops_dataset` with the build summary (dataset_uri, dataset_hash, rows,
   items generated/reused, steered_by) and the trigger kind; the fine-tune DAG runs on it and skips the
   run when the champion was already trained on that dataset ("no new data since vN").

Output (`[llmops] dataset_root_uri`, default `<data_root>/datasets`): `items/`, `versions/<hash>/`,
`latest.json`.
"""

import pendulum
from airflow.sdk import DAG, Param

from llmops.k8s.secrets import TEACHER_KEY
from llmops_operators import airflow_settings, step_operator
from llmops_operators.assets import CORPUS, DATASET, RETRAIN
from llmops_operators.dataset import DatasetEventOperator, DatasetInputsOperator

settings = airflow_settings()
INPUTS = "ti.xcom_pull(task_ids='dataset_inputs')"
NO_LIMIT = 1_000_000_000
"""`llmops dataset build --budget` counts chunks (0 generates nothing); the form's 0 means no limit."""

with DAG(
    dag_id="llmops_dataset",
    description="Build the versioned fine-tuning and evaluation dataset from the corpus snapshot",
    doc_md=__doc__,
    schedule=(CORPUS | RETRAIN),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "dataset"],
    params={
        "corpus_uri": Param(
            settings.processed,
            type="string",
            minLength=1,
            title="Corpus (preprocessing output)",
            description="Folder or s3:// prefix of the preprocessing output (its manifest.json names the snapshot).",
        ),
        "dataset_root": Param(
            settings.dataset_root,
            type="string",
            minLength=1,
            title="Dataset root",
            description="Folder or s3:// prefix holding the item cache and the dataset versions.",
        ),
        "generator": Param(
            settings.training.dataset_generator,
            type="string",
            enum=["extractive", "teacher"],
            title="Generator",
            description="extractive: deterministic items from the chunk text (no model); teacher: grounded "
            "question/answer pairs from an OpenAI-compatible chat endpoint.",
        ),
        "budget": Param(
            settings.training.dataset_budget,
            type="integer",
            minimum=0,
            maximum=NO_LIMIT,
            title="Generation budget (chunks)",
            description="Most chunks to generate items for in this build, steered chunks first; 0: no limit.",
        ),
        "steer": Param(
            "",
            type="string",
            title="Steer file",
            description="A drift report's steer.json (its chunk ids are generated first). Empty: the steer "
            "file of the triggering drift event, if any.",
        ),
    },
):
    inputs = DatasetInputsOperator(task_id="dataset_inputs", steer="{{ params.steer }}")
    build = step_operator(
        task_id="build",
        step=["dataset", "build"],
        arguments=[
            "--corpus", "{{ params.corpus_uri }}",
            "--out", "{{ params.dataset_root }}",
            "--generator", "{{ params.generator }}",
            "--budget", "{{ params.budget if params.budget > 0 else " + str(NO_LIMIT) + " }}",
            "--steer", "{{ " + INPUTS + "['steer'] }}",
        ],
        settings=settings,
        # The teacher's API key: from an Airflow connection locally, from a Secret in a pod.
        connection_env={TEACHER_KEY: settings.training.teacher_conn_id} if settings.training.teacher_conn_id else None,
    )
    publish = DatasetEventOperator(
        task_id="publish_dataset", summary=build.output, inputs=inputs.output, outlets=[DATASET]
    )
    inputs >> build >> publish
