"""
### Drift monitor: is recent inference traffic still covered by the training data?

Every hour (the `drift_schedule` setting) `detect_drift` runs `llmops drift`: it reads the traffic of the
last `window_hours` (JSONL/Parquet request logs under the `traffic_uri` setting: one JSON object per
request with at least `prompt`, optionally `timestamp`, `completion`, `model`), embeds the prompts with
the corpus's embedding model, and asks whether a significant share of it is **uncovered**: farther from
every reference sample than the reference's own documents are from each other (leave-one-document-out
nearest-neighbour distances). The p-value comes from random splits of the reference's documents, so
traffic about a subset of the training topics is not drift; the excess uncovered share must also reach
`min_effect`. MMD and a domain classifier are reported as descriptive signals. Fewer than `min_samples`
texts on either side gives "not enough data" instead of a verdict.

The report (`report.json`, `report.html` with the uncovered traffic grouped, each group's nearest corpus
chunks, a PCA projection and the score history) lands under the `drift_reports_uri` setting and in
MLflow; the task's XCom carries `report_uri`, `mlflow_run_id` and, on drift, `steer_uri`: a
`steer.json` beside the report naming the chunks the next dataset build should generate for first.

When drift is found, `emit_retrain` emits the **`llmops_retrain`** asset event with the report URI, the
effect size, the p-values, `drift_event` and `steer_uri` in its `extra`; otherwise it is skipped and no
event is emitted. The dataset and fine-tune DAGs are scheduled on that asset and apply the retrain
cooldown (`retrain_cooldown_hours`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from llmops_operators import airflow_settings, step_operator
from llmops_operators.drift import emit_retrain
from llmops_operators.schedules import cron_schedule

settings = airflow_settings()

with DAG(
    dag_id="llmops_drift",
    schedule=cron_schedule(settings.drift.drift_schedule),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["llmops", "drift"],
    params={
        "traffic_uri": Param(
            "",
            type="string",
            title="Traffic",
            description="JSONL/Parquet request logs (a file or folder, local or s3://). Empty: the traffic_uri setting.",
            maxLength=2048,
        ),
        "reference_uri": Param(
            "",
            type="string",
            title="Reference",
            description="Training-data files (finetune.jsonl) or a preprocessing output folder. "
            "Empty: the drift_reference_uri setting.",
            maxLength=2048,
        ),
        "window_hours": Param(
            24.0,
            type="number",
            title="Window (hours)",
            description="Compare the traffic of the last N hours before the run's time; 0 = all traffic up to the run's time.",
            minimum=0,
            maximum=24 * 90,
        ),
        "alpha": Param(
            0.05,
            type="number",
            title="Alpha",
            description="False-alarm rate of the drift verdict.",
            minimum=0.001,
            maximum=0.5,
        ),
        "min_samples": Param(
            50,
            type="integer",
            title="Minimum samples",
            description="Fewer texts than this on either side gives 'not enough data' instead of a verdict.",
            minimum=10,
            maximum=100000,
        ),
        "max_samples": Param(
            2000,
            type="integer",
            title="Maximum samples",
            description="Each side is subsampled (seeded) to at most this many texts.",
            minimum=10,
            maximum=50000,
        ),
        "min_effect": Param(
            settings.drift.drift_min_effect,
            type="number",
            title="Effect-size floor",
            description="Drift also needs the uncovered share of the traffic to exceed the reference's own "
            "by at least this much (0.05 = 5 points).",
            minimum=0,
            maximum=1,
        ),
        "permutations": Param(
            500,
            type="integer",
            title="Permutations",
            description="Permutations of the descriptive MMD/classifier tests.",
            minimum=19,
            maximum=20000,
        ),
        "log_mlflow": Param(True, type="boolean", title="Log to MLflow", description="Log the report as an MLflow run."),
    },
) as dag:
    detect = step_operator(
        task_id="detect_drift",
        step="drift",
        arguments=[
            "--reference", "{{ params.reference_uri }}",
            "--current", "{{ params.traffic_uri }}",
            "--window-hours", "{{ params.window_hours }}",
            "--until", "{{ (dag_run.data_interval_end or dag_run.run_after).isoformat() }}",
            "--alpha", "{{ params.alpha }}",
            "--min-samples", "{{ params.min_samples }}",
            "--max-samples", "{{ params.max_samples }}",
            "--min-effect", "{{ params.min_effect }}",
            "--permutations", "{{ params.permutations }}",
            "{{ '--mlflow' if params.log_mlflow else '--no-mlflow' }}",
            # The verdict travels in the summary; exit codes 3/4 would fail the task here.
            "--exit-zero",
        ],
    )
    emit_retrain(detect.output)
