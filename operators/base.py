"""What both execution modes share: settings from Airflow, the step command line, the factory."""

from __future__ import annotations

import shlex
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llmops.settings import Settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

SUMMARY_IN_POD = "/airflow/xcom/return.json"
"""Where a step pod writes its summary: the KubernetesPodOperator XCom sidecar reads this file."""


def airflow_settings(**overrides: Any) -> Settings:
    """Settings from `LLMOPS_*` variables and Airflow's `[llmops]` config section (cheap: no I/O beyond
    the config Airflow has already loaded, so it is safe at DAG parse time)."""
    import os

    from airflow.sdk import conf

    section = conf.getsection("llmops")
    if section is None:
        # Airflow returns no section when only AIRFLOW__LLMOPS__* variables define it.
        prefix = "AIRFLOW__LLMOPS__"
        section = {k[len(prefix):].lower(): v for k, v in os.environ.items() if k.startswith(prefix)}
    return load_settings(airflow_section={k: str(v) for k, v in section.items()}, **overrides)


def step_words(step: str | Sequence[str]) -> list[str]:
    return shlex.split(step) if isinstance(step, str) else list(step)


def step_command(step: str | Sequence[str], arguments: Sequence[str], summary_path: str | None) -> list[str]:
    """`llmops <step> <arguments> [--summary-json PATH]`: the command in both modes."""
    cmd = ["llmops", *step_words(step), *[str(a) for a in arguments]]
    if summary_path:
        cmd += ["--summary-json", summary_path]
    return cmd


SKIPPED_SUMMARY = "skipped_summary"
"""XCom key of the summary of a step that exited with a skip code (e.g. a rejecting gate's report)."""


def normalize_exit_codes(codes: int | Container[int] | None) -> tuple[int, ...]:
    if codes is None:
        return ()
    if isinstance(codes, int):
        return (codes,)
    return tuple(codes)  # type: ignore[arg-type]


def upstream_summary(model: type[M], value: Any, what: str) -> M:
    """`value`, an upstream step's summary pulled from XCom, read as its contract `model`; a ValueError
    naming `what` and the value when it is missing or malformed."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"the {what} summary is missing or malformed: {value!r} ({exc})") from None


def attach_summary_to_outlets(operator: Any, context: Any, summary: Any) -> None:
    """Put a step's summary (small: ids, URIs, counts) on the asset events its task emits, so consumers
    read e.g. the model version or snapshot id from `triggering_asset_events` instead of XCom."""
    if not isinstance(summary, dict) or not getattr(operator, "outlets", None):
        return
    from airflow.sdk import Asset

    small = {k: v for k, v in summary.items() if isinstance(v, str | int | float | bool) or v is None}
    for outlet in operator.outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = small


def step_operator(
    *,
    task_id: str,
    step: str | Sequence[str],
    arguments: Sequence[str] = (),
    gpus: int | str = 0,
    summary: bool = True,
    skip_on_exit_code: int | Container[int] | None = None,
    settings: Settings | None = None,
    connection_env: dict[str, str] | None = None,
    **kwargs: Any,
) -> BaseOperator:
    """The operator that runs `llmops <step>` where the settings' mode says.

    :param step: the subcommand (`"train"`, `"bench rag"`, or a list of words).
    :param arguments: its arguments; templated (`{{ params.x }}`), so a trigger form's values reach it.
    :param gpus: GPUs for the pod in mode `kubernetes` (tolerations, node selector and Kueue label apply
        to GPU pods); a template such as `"{{ params.gpus }}"` is resolved when the pod is built. Ignored
        locally.
    :param summary: pass `--summary-json` and return the step's summary as the task's XCom.
    :param skip_on_exit_code: exit codes that skip the task (and its downstream) instead of failing it:
        the gate's 3 (rejected), the drift monitor's 0/4 when only drift should continue.
    :param connection_env: mode `local`: variables set from Airflow connections' passwords when the task
        runs (`{"LLMOPS_TEACHER_API_KEY": "teacher"}`). Pods get credentials from Secrets instead
        (`llmops.k8s.secrets`), never by value, so it is ignored in mode `kubernetes`.
    """
    settings = settings or airflow_settings()
    if settings.mode == "kubernetes":
        from llmops_operators.kubernetes import KubernetesStepOperator

        return KubernetesStepOperator(
            task_id=task_id,
            step=step,
            arguments=list(arguments),
            gpus=gpus,
            summary=summary,
            skip_on_exit_code=skip_on_exit_code,
            settings=settings,
            **kwargs,
        )
    from llmops_operators.local import LocalStepOperator

    return LocalStepOperator(
        task_id=task_id,
        step=step,
        arguments=list(arguments),
        summary=summary,
        skip_on_exit_code=skip_on_exit_code,
        settings=settings,
        connection_env=connection_env,
        **kwargs,
    )
