"""
### Fine-tune, gate, register and deploy (the lifecycle DAG)

Runs when the dataset DAG publishes a dataset version (`llmops_dataset`: built on a new corpus snapshot
or on a drift event), on a weekly cron (setting `retrain_schedule`; `none` turns it off), or by hand; one
run at a time.

1. `check_trigger` records why the run started (the corpus or drift event behind the dataset) and
   decides whether to go ahead: at most one drift-triggered retrain per `retrain_cooldown_hours`, and
   nothing is retrained without something to learn: when the champion was trained on the same dataset
   version with the same training parameters, the run is skipped as "no new data since vN" (conf
   `{"force": true}` trains anyway). A held-back trigger is recorded with its reason in the trigger
   ledger and every downstream task is skipped.
2. `resolve_inputs` checks the base model and the dataset version (`latest`: the triggering event's,
   else the newest under `dataset_root`) before any GPU is requested, and records the corpus snapshot.
3. `train` runs `llmops train` (a subprocess locally, a GPU pod on Kubernetes). Checkpoints live in a
   folder keyed by DAG id and run id and the step always resumes (`--resume auto`), so a retried or
   preempted task continues instead of starting over.
4. `evaluate_candidate` and `evaluate_champion` run lm-eval on the domain tasks (`corpus_mc`,
   `corpus_qa`) on the dataset version's evaluation split, both models on the same items, reported per
   slice (`new`, `retained`); `gate` compares them with paired tests and Holm correction (`gate_policy`:
   significantly better on `new`, not worse on `retained`); a rejection skips promotion and deployment,
   with the reasons in the task log.
5. `register` records the version in MLflow with its lineage (dataset hash, snapshot, generator and
   config, training parameters; alias `challenger`); `approve` asks a human when the Param `approval` is
   `required` (body: the gate report; Reject or no answer within `approval_timeout_hours` keeps the
   champion; the decision is recorded on the version); `choose_rollout` reads the deploy config: without
   a canary (`canary.enabled: false`, or no champion yet to serve beside), `promote` moves `champion` to
   the version and emits `llmops_model`; with a canary, `keep_champion` runs instead and the alias stays:
   the version goes out as the canary beside the champion, and promoting it is a later decision
   (`llmops promote --version N`, README "Verified canary").
6. `render_manifests` renders and validates the vLLM manifests for the new version; `smoke_test`
   (local mode) serves them with the pinned vLLM (transformers fallback) and answers a prompt;
   `canary_verify` moves a canary's weight only once the challenger passed beside the champion (in mode
   kubernetes after `deploy` put it out at weight 0, and `deploy_verified` applies the weight); `deploy`
   makes it live (GitOps pointer, and server-side apply with rollout wait and rollback in mode kubernetes).
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from llmops.settings import join_uri
from llmops.training.config import param_spec
from llmops.training.inputs import LATEST, run_locations
from llmops.training.inputs import RUN_KEY_TEMPLATE as RUN_KEY
from llmops_operators import airflow_settings, step_operator
from llmops_operators.approval import PromotionApprovalOperator
from llmops_operators.assets import DATASET, MODEL
from llmops_operators.deploy import ChooseRolloutOperator, DeployManifestsOperator
from llmops_operators.evaluation import gate_tasks
from llmops_operators.schedules import cron_schedule
from llmops_operators.training import ResolveInputsOperator
from llmops_operators.triggers import retrain_trigger

settings = airflow_settings()
locations = run_locations(settings, "{{ dag.dag_id }}", RUN_KEY)
TRIGGER = "{{ ti.xcom_pull(task_ids='check_trigger')['trigger'] }}"
REGISTERED = "ti.xcom_pull(task_ids='register')"
VERSION_URI = "models:/{{ " + REGISTERED + "['registered_model_name'] }}/{{ " + REGISTERED + "['version'] }}"
# choose_rollout ran promote (no canary) or keep_champion (canary): promote left a summary only in the first case.
CANARY = "{{ 'false' if ti.xcom_pull(task_ids='promote') else 'true' }}"


TRAINING_PARAMS = (
    "base_model", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "max_steps", "epochs",
    "batch_size", "max_seq_len",
)
"""The Params that make up the training recipe: with the dataset hash, they say whether the champion
already learnt what this run would."""


def _param(key: str, title: str) -> Param:
    return Param(title=title, **param_spec(key, settings.training.train_defaults))


with DAG(
    dag_id="llmops_finetune",
    description="Fine-tune a LoRA adapter, gate it against the champion, register, promote and deploy it",
    doc_md=__doc__,
    schedule=cron_schedule(settings.training.retrain_schedule, assets=DATASET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "training", "evaluation", "deployment"],
    params={
        "base_model": Param(
            settings.base_model,
            type="string",
            minLength=1,
            title="Base model",
            description="Hub id, local folder or s3:// folder of the model to adapt.",
        ),
        "dataset": Param(
            LATEST,
            type="string",
            minLength=1,
            title="Dataset",
            description="`latest`: the dataset version of the triggering llmops_dataset event, else the newest "
            "under dataset_root. Or a dataset version folder (local or s3://; trained on its train split, "
            "evaluated on its eval split), or a rows file (JSONL or Parquet: prompt/completion or chat messages).",
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
            description="GPUs of the training and evaluation pods (mode kubernetes); more than one trains "
            "with torchrun/DDP. Ignored in mode local.",
        ),
        "eval_limit": Param(
            0,
            type="integer",
            minimum=0,
            maximum=100000,
            title="Evaluation samples per task",
            description="0: every sample. Fewer samples make a gain harder to prove (the gate then rejects).",
        ),
        "gate_policy": Param(
            settings.serving.gate_policy,
            type="string",
            minLength=1,
            title="Gate policy",
            description="Gate policy YAML (relative to the checkout, absolute, or s3://): per metric a floor, "
            "the largest regression allowed against the champion, and the confidence level.",
        ),
        "deploy_config": Param(
            settings.deploy_config,
            type="string",
            minLength=1,
            title="Deployment config",
            description="vLLM deployment config YAML (relative to the checkout, absolute, or s3://); "
            "examples/gpu/deploy.yaml shows every field.",
        ),
        "deploy_apply": Param(
            settings.serving.deploy_apply,
            type="string",
            enum=["auto", "true", "false"],
            title="Apply to the cluster",
            description="auto: server-side apply in mode kubernetes, GitOps folder only in mode local; "
            "false: only move the GitOps pointer (Argo CD or Flux applies); true: always apply.",
        ),
        "approval": Param(
            settings.serving.approval,
            type="string",
            enum=["none", "required"],
            title="Human approval",
            description="required: `approve` waits for Approve/Reject in Required actions (body: the gate "
            "report) before promotion; no answer within approval_timeout_hours means Reject. none: promote "
            "when the gate passes.",
        ),
    },
) as dag:
    check = retrain_trigger(task_id="check_trigger", training_params=TRAINING_PARAMS)

    inputs = ResolveInputsOperator(
        task_id="resolve_inputs",
        base_model="{{ params.base_model }}",
        dataset="{{ params.dataset }}",
        triggered_dataset="{{ (ti.xcom_pull(task_ids='check_trigger') or {}).get('dataset_uri') or '' }}",
    )
    resolved = "ti.xcom_pull(task_ids='resolve_inputs')"
    train = step_operator(
        task_id="train",
        settings=settings,
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
    check >> inputs >> train

    evaluation = gate_tasks(
        eval_root=join_uri(settings.runs, "{{ dag.dag_id }}", RUN_KEY, "eval"),
        policy="{{ params.gate_policy }}",
        gpus="{{ params.gpus }}",
        limit="{{ params.eval_limit }}",
        dataset="{{ " + resolved + "['eval_dataset'] }}",
        training_params_sha256="{{ ti.xcom_pull(task_ids='check_trigger')['training_params_sha256'] }}",
        promote_outlets=[MODEL],
        trigger=TRIGGER,
        settings=settings,
    )
    train >> [evaluation["evaluate_candidate"], evaluation["evaluate_champion"]]

    # Between register and promote; skipped with promote when the gate rejects.
    approve = PromotionApprovalOperator(
        task_id="approve",
        gate_report="{{ ti.xcom_pull(task_ids='gate')['report_uri'] }}",
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        settings=settings,
    )
    [evaluation["gate"], evaluation["register"]] >> approve

    rollout = ChooseRolloutOperator(
        task_id="choose_rollout",
        deploy_config="{{ params.deploy_config }}",
        model_name="{{ " + REGISTERED + "['registered_model_name'] }}",
        version="{{ " + REGISTERED + "['version'] }}",
        promote_task_id="promote",
        canary_task_id="keep_champion",
    )
    # Canary path: promotion is a later decision (`llmops promote`, README "Verified canary").
    keep_champion = EmptyOperator(task_id="keep_champion")
    approve >> rollout >> [evaluation["promote"], keep_champion]

    render = step_operator(
        task_id="render_manifests",
        settings=settings,
        step="render",
        arguments=["--model-uri", VERSION_URI, "--config", "{{ params.deploy_config }}",
                   "--set", "canary.enabled=" + CANARY],
        # After promote or keep_champion, whichever the branch ran; skipped when both are (a rejection).
        trigger_rule="none_failed_min_one_success",
    )
    [evaluation["promote"], keep_champion] >> render
    deploy = DeployManifestsOperator(
        task_id="deploy",
        manifests_uri="{{ ti.xcom_pull(task_ids='render_manifests')['manifests_uri'] }}",
        apply="{{ params.deploy_apply }}",
        execution_timeout=pendulum.duration(hours=2),
    )
    # A canary (canary.enabled) is rendered at weight 0; this moves it to its weight only when the challenger,
    # served beside the champion, is listed, answers and does not regress on replayed prompts, else rolls the
    # folder back to the stable-only manifests and fails. Without a canary it has nothing to do.
    verify = step_operator(
        task_id="canary_verify",
        settings=settings,
        step="canary verify",
        arguments=["--manifests", "{{ ti.xcom_pull(task_ids='render_manifests')['manifests_uri'] }}"],
    )
    if settings.mode == "local":
        # No cluster to roll out to: serve the rendered manifests' arguments with the pinned vLLM (`make vllm`;
        # transformers + peft when that environment is absent, said in the summary) and answer a prompt.
        smoke = step_operator(
            task_id="smoke_test",
            settings=settings,
            step="smoke",
            arguments=["--model-uri", VERSION_URI, "--config", "{{ params.deploy_config }}", "--manifests",
                       "{{ ti.xcom_pull(task_ids='render_manifests')['manifests_uri'] }}"],
        )
        render >> smoke >> verify >> deploy
    else:
        # The check asks the cluster's Services (API server proxy): the canary goes out at weight 0 first.
        deploy_verified = DeployManifestsOperator(
            task_id="deploy_verified",
            manifests_uri="{{ ti.xcom_pull(task_ids='render_manifests')['manifests_uri'] }}",
            apply="{{ params.deploy_apply }}",
            execution_timeout=pendulum.duration(hours=2),
        )
        render >> deploy >> verify >> deploy_verified
