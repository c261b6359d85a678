"""
### Drift monitor: is recent inference traffic still like the training data?

Every hour (the `drift_schedule` setting) `detect_drift` runs `llmops drift`: it reads the traffic of the
last `window_hours` (JSONL/Parquet request logs under the `traffic_uri` setting: one JSON object per
request with at least `prompt`, optionally `timestamp`, `completion`, `model`), embeds the prompts with
the corpus's embedding model, and compares them with the reference sample (the fine-tuning data, or a
preprocessing output's snapshot) with two permutation tests: MMD with an RBF kernel and a
cross-validated ridge domain classifier. Their p-values are combined (Westfall-Young min-P over the same
permutations), so the false-alarm rate of the verdict is `alpha`. Fewer than `min_samples` texts on
either side gives "not enough data" instead of a verdict.

The report (`report.json`, `report.html` with a PCA projection and the score history) lands under the
`drift_reports_uri` setting and in MLflow; the task's XCom carries `report_uri` and `mlflow_run_id`.

When drift is found, `emit_retrain` emits the **`llmops_retrain`** asset event with the report URI and
the p-values in its `extra`; otherwise it is skipped and no event is emitted. The fine-tune DAG is
scheduled on that asset and applies the retrain cooldown (`retrain_cooldown_hours`).
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
    schedule=cron_schedule(settings.drift_schedule),
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
        "permutations": Param(
            500,
            type="integer",
            title="Permutations",
            description="Permutations for the p-values; the smallest p-value is 1/(permutations+1).",
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
            "--permutations", "{{ params.permutations }}",
            "{{ '--mlflow' if params.log_mlflow else '--no-mlflow' }}",
            # The verdict travels in the summary; exit codes 3/4 would fail the task here.
            "--exit-zero",
        ],
    )
    emit_retrain(detect.output)
