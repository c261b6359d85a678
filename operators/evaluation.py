"""The evaluation-gate part of the fine-tune DAG, as one factory: five step tasks wired together.

    train --> evaluate_candidate --+
          \\-> evaluate_champion --+--> gate --> register --> promote --> (deployment)
                                            \\------------------^

- `evaluate_candidate`: `llmops evaluate` on the train step's adapter (a GPU pod in mode kubernetes);
- `evaluate_champion`: the same on `models:/NAME@champion`, on the same data (`dataset`: the candidate's
  evaluation split, even when the champion was trained on an older dataset version, so the two pair item
  by item); skipped (exit 3) while there is no champion;
- `gate`: runs when no upstream failed (a skipped champion evaluation means "no champion": floors only);
  exit 3 (rejected) skips it, and so `promote` and everything after;
- `register`: also after a rejection (trigger rule `none_failed`), so every finished training run gets its
  lineage tags and gate report, and a model version (alias `challenger`, tagged with the decision);
- `promote`: moves `champion` when the gate passed.

Paths are deterministic under `eval_root` (templated, e.g. `<data_root>/eval/{{ run_id }}`), so a retried
task finds its inputs without XCom; XCom carries the train summary and the registered version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmops.exceptions import SKIP_EXIT_CODE
from llmops.settings import Settings, join_uri
from llmops_operators.base import airflow_settings, step_operator

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

SKIP = SKIP_EXIT_CODE
"""Exit code of a "no": gate rejected, no champion to evaluate, promote of a rejected candidate."""


def gate_tasks(
    *,
    eval_root: str,
    policy: str,
    train_task_id: str = "train",
    model_name: str | None = None,
    gpus: int | str = 1,
    limit: int | str | None = None,
    tasks: str | None = None,
    dataset: str | None = None,
    training_params_sha256: str | None = None,
    training_config: str | None = None,
    manifest: str | None = None,
    register_rejected: bool = True,
    promote_outlets: Sequence[Any] = (),
    trigger: str | None = None,
    settings: Settings | None = None,
) -> dict[str, BaseOperator]:
    """Create (in the current DAG) and wire evaluate_candidate, evaluate_champion, gate, register, promote.

    :param eval_root: folder or `s3://` prefix for this run's evaluations and gate report (templated).
    :param policy: gate policy file (templated; e.g. `examples/local/gate.yaml`).
    :param train_task_id: the task whose XCom is the train summary (`mlflow_run_id`, `adapter_dir`, ...).
    :param model_name: registered model name (default: setting `registered_model_name`).
    :param gpus: GPUs of the two evaluation pods in mode kubernetes (an int or a template such as
        `"{{ params.gpus }}"`).
    :param limit: samples per task (templated, e.g. `{{ params.eval_limit }}`); None or 0: all.
    :param tasks: comma-separated lm-eval tasks; None: the project's domain tasks.
    :param dataset: dataset version whose evaluation split both models are evaluated on (templated).
    :param training_params_sha256: hash of the run's training parameters, recorded with the version
        (templated; the trigger check's XCom).
    :param training_config: training config file recorded with the run (templated).
    :param manifest: preprocessing `manifest.json` (default: `<processed>/manifest.json`).
    :param register_rejected: register rejected candidates too (lineage and report); False: only passed ones.
    :param promote_outlets: outlets of `promote` (e.g. the MODEL asset).
    :param trigger: what started the run (templated, e.g. the trigger task's XCom), recorded as a tag.
    :return: the tasks by task id; wire `train >> [evaluate_candidate, evaluate_champion]` and
        `promote >> <deployment>` in the DAG.
    """
    settings = settings or airflow_settings()
    name = model_name or settings.mlflow.registered_model_name
    candidate_dir = join_uri(eval_root, "candidate")
    champion_dir = join_uri(eval_root, "champion")
    report = join_uri(eval_root, "gate.json")
    train = f"ti.xcom_pull(task_ids='{train_task_id}')"
    lineage = ["--dag-id", "{{ dag.dag_id }}", "--airflow-run-id", "{{ run_id }}"]
    eval_args: list[str] = []
    if limit is not None:
        eval_args += ["--limit", str(limit)]
    if tasks:
        eval_args += ["--tasks", tasks]
    if dataset:
        eval_args += ["--dataset", dataset]

    evaluate_candidate = step_operator(
        task_id="evaluate_candidate",
        step="evaluate",
        gpus=gpus,
        settings=settings,
        arguments=[
            "--model", "{{ " + train + "['adapter_dir'] }}",
            "--output", candidate_dir,
            "--tag", "llmops.training_run_id={{ " + train + "['mlflow_run_id'] }}",
            *eval_args,
            *lineage,
        ],
    )
    evaluate_champion = step_operator(
        task_id="evaluate_champion",
        step="evaluate",
        gpus=gpus,
        settings=settings,
        arguments=["--model", f"models:/{name}@champion", "--output", champion_dir, "--skip-if-missing", *eval_args, *lineage],
        skip_on_exit_code=SKIP,
    )
    gate = step_operator(
        task_id="gate",
        step="gate",
        settings=settings,
        arguments=[
            "--candidate", candidate_dir,
            # A skipped champion evaluation pushed no summary: no champion, the floors alone decide.
            "--baseline", "{{ (ti.xcom_pull(task_ids='evaluate_champion') or {}).get('output') or 'none' }}",
            "--policy", policy,
            "--report", report,
        ],
        skip_on_exit_code=SKIP,
        trigger_rule="none_failed",
    )
    register_args = [
        "--name", name,
        "--training-summary", "{{ " + train + " | tojson }}",
        "--gate-report", report,
        *lineage,
    ]
    if training_config:
        register_args += ["--training-config", training_config]
    if manifest:
        register_args += ["--manifest", manifest]
    if trigger:
        register_args += ["--trigger", trigger]
    if training_params_sha256:
        register_args += ["--training-params-sha256", training_params_sha256]
    register = step_operator(
        task_id="register",
        step="register",
        settings=settings,
        arguments=register_args,
        trigger_rule="none_failed" if register_rejected else "all_success",
    )
    promote = step_operator(
        task_id="promote",
        step="promote",
        settings=settings,
        arguments=["--name", name, "--version", "{{ ti.xcom_pull(task_ids='register')['version'] }}", "--gate-report", report],
        skip_on_exit_code=SKIP,
        outlets=list(promote_outlets),
    )
    [evaluate_candidate, evaluate_champion] >> gate >> register >> promote
    # Directly downstream of the gate too: a rejection (gate skipped) skips promote without running it.
    gate >> promote
    return {
        "evaluate_candidate": evaluate_candidate,
        "evaluate_champion": evaluate_champion,
        "gate": gate,
        "register": register,
        "promote": promote,
    }
