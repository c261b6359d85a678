"""
### Fine-tune a LoRA adapter

`resolve_inputs` checks the base model and the dataset (cheap, on the worker, before any GPU is
requested) and records the corpus snapshot the pipeline last indexed; `train` runs `llmops train` as
a local subprocess (mode `local`) or a GPU pod (mode `kubernetes`: GPU limit from the `gpus` Param,
tolerations, Kueue queue label, checkpoint and model-cache PVCs). More than one GPU runs torchrun in
the pod.

Checkpoints live in a folder keyed by DAG id and run id and the step runs with `--resume auto`, so a
retried or preempted `train` task continues from its last checkpoint instead of starting over.
The `train` task's XCom is the run summary: `adapter_dir`, `base_model`, `mlflow_run_id`,
`dataset_hash`, losses, tokens/s.

Every knob below is a Param of the trigger form; defaults come from the training config
(`llmops.training.config.TrainConfig`, tuned for the tiny local model) and the `train_defaults` setting.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from llmops.training.config import param_spec
from llmops.training.inputs import run_locations
from llmops_operators import airflow_settings, step_operator
from llmops_operators.assets import CORPUS, RETRAIN

settings = airflow_settings()
RUN_KEY = "{{ run_id | replace(':', '-') | replace('+', '-') }}"
"""The run id made safe for paths and S3 keys (it contains ':' and '+')."""
locations = run_locations(settings, "{{ dag.dag_id }}", RUN_KEY)


def _param(key: str, title: str) -> Param:
    return Param(title=title, **param_spec(key, settings.train_defaults))


with DAG(
    dag_id="llmops_finetune",
    description="LoRA fine-tuning of the assistant model (checkpointed, resumable, tracked in MLflow)",
    doc_md=__doc__,
    schedule=(CORPUS | RETRAIN),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "training"],
    params={
        "base_model": Param(
            settings.base_model_uri,
            type="string",
            minLength=1,
            title="Base model",
            description="Hub id, local folder or s3:// folder of the model to adapt.",
        ),
        "dataset": Param(
            settings.dataset,
            type="string",
            minLength=1,
            title="Dataset URI",
            description="Training rows (JSONL or Parquet file or folder, local or s3://): "
            "prompt/completion or chat messages.",
        ),
        "lora_r": _param("lora_r", "LoRA rank"),
        "lora_alpha": _param("lora_alpha", "LoRA alpha"),
        "lora_dropout": _param("lora_dropout", "LoRA dropout"),
        "target_modules": _param("target_modules", "LoRA target modules"),
        "learning_rate": _param("learning_rate", "Learning rate"),
        "max_steps": _param("max_steps", "Max steps"),
        "epochs": _param("epochs", "Epochs"),
        "batch_size": _param("batch_size", "Batch size"),
        "max_seq_len": _param("max_seq_len", "Sequence length"),
        "gpus": Param(
            1 if settings.mode == "kubernetes" else 0,
            type="integer",
            minimum=0,
            maximum=16,
            title="GPUs",
            description="GPUs of the training pod (mode kubernetes); more than one trains with torchrun/DDP. "
            "Ignored in mode local.",
        ),
    },
) as dag:

    @task(multiple_outputs=False)
    def resolve_inputs(params=None) -> dict:
        """Check the base model and dataset; record the latest corpus snapshot (lineage)."""
        from llmops.training.inputs import resolve_inputs as resolve

        return resolve(airflow_settings(), base_model=params["base_model"], dataset=params["dataset"])

    inputs = resolve_inputs()
    resolved = "ti.xcom_pull(task_ids='resolve_inputs')"
    train = step_operator(
        task_id="train",
        step="train",
        gpus="{{ params.gpus }}",
        retries=2,
        retry_delay=pendulum.duration(minutes=1),
        arguments=[
            "--output-dir", locations["output_dir"],
            "--checkpoint-dir", locations["checkpoint_dir"],
            "--resume", "auto",
            "--run-name", "{{ dag.dag_id }}-" + RUN_KEY,
            "--set", "base_model={{ " + resolved + "['base_model'] }}",
            "--set", "dataset={{ " + resolved + "['dataset'] }}",
            "--set", "lora_r={{ params.lora_r }}",
            "--set", "lora_alpha={{ params.lora_alpha }}",
            "--set", "lora_dropout={{ params.lora_dropout }}",
            "--set", "target_modules={{ params.target_modules | join(',') }}",
            "--set", "learning_rate={{ params.learning_rate }}",
            "--set", "max_steps={{ params.max_steps }}",
            "--set", "epochs={{ params.epochs }}",
            "--set", "batch_size={{ params.batch_size }}",
            "--set", "max_seq_len={{ params.max_seq_len }}",
        ],
    )
    inputs >> train
