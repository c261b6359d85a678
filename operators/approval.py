"""Human approval between the gate and promotion: the standard provider's `ApprovalOperator` with the
gate report as its body, the decision recorded on the model version.

- `approval: none` (the DAG's Param, default from the setting `approval`): the task returns at once
  (`{"approval": "none"}`) and promotion goes ahead: nobody is asked.
- `approval: required`: the task waits in the Airflow UI ("Required actions"; or `PATCH
  /api/v2/hitlDetails/{dag_id}/{dag_run_id}/{task_id}/{map_index}` with `{"chosen_options": [...],
  "params_input": {"reason": "..."}}`). Its body is the gate report (verdict, reasons, metrics with CIs
  and p-values per slice) with links to the report pages. "Approve" lets `promote` run; "Reject" skips
  it (the champion stays).
- Either way the decision, who made it, when and why are set as `llmops.approval.*` tags on the model
  version and its training run, and in the run's `lineage/approval.json`.
- Timeout (`approval_timeout_hours`): the default outcome is "Reject", recorded with `by` = `timeout`.

The task is not an `ApprovalOperator` subclass: the provider's module imports the HITL trigger and
`airflow.triggers.base`, ~7 ms that every parse of the fine-tune DAG would pay (a quarter of a trivial
DAG's whole parse). It builds the provider's operator when it runs (`approval_operator`) and hands it the
request (`execute`: the HITL detail, then Airflow parks the task awaiting input) and the answer
(`execute_complete`: validation, and on Reject the downstream tasks skipped), so the provider's behaviour
is the one that runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Param
from airflow.sdk.bases.skipmixin import SkipMixin

from llmops.settings import Settings
from llmops_operators.base import airflow_settings

if TYPE_CHECKING:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

REASON = "reason"


class PromotionApprovalOperator(BaseOperator, SkipMixin):
    """Ask a human to approve the registered version whose gate report is `gate_report`."""

    template_fields = ("subject", "gate_report", "model_name", "version", "approval")
    inherits_from_skipmixin = True  # Reject skips the downstream tasks (the provider's ApprovalOperator)
    APPROVE = "Approve"
    REJECT = "Reject"
    """The provider's two options (`ApprovalOperator.APPROVE`, `.REJECT`)."""

    def __init__(
        self,
        *,
        gate_report: str,
        version: str,
        approval: str = "{{ params.approval }}",
        model_name: str | None = None,
        subject: str = "Promote {{ ti.xcom_pull(task_ids='register')['model_uri'] }} to champion?",
        response_timeout: timedelta | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        s = settings or airflow_settings()
        self.subject = subject
        self.response_timeout = response_timeout or timedelta(hours=s.serving.approval_timeout_hours)
        self.gate_report = gate_report
        self.version = version
        self.approval = approval
        self.model_name = model_name or s.mlflow.registered_model_name

    def approval_operator(self, body: str | None = None) -> ApprovalOperator:
        """The provider's operator for this task: the (rendered) subject, `body`, Reject by default and at
        the timeout, one form field (the reason), and this task's downstream tasks to skip on Reject."""
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        operator = ApprovalOperator(
            task_id=self.task_id,
            subject=self.subject,
            body=body,
            defaults=self.REJECT,
            response_timeout=self.response_timeout,
            params={REASON: Param("", type="string", title="Reason", description="Why (recorded on the version).")},
        )
        # Built outside the DAG: the tasks it skips on Reject come from the context's task (this one).
        operator.downstream_task_ids = set(self.downstream_task_ids)
        return operator

    def execute(self, context):
        if str(self.approval).strip() == "none":
            self.log.info("approval: none: promotion goes ahead without a human decision")
            return {"approval": "none", **self._links()}
        if str(self.approval).strip() != "required":
            from llmops.exceptions import ConfigError

            raise ConfigError(f"approval = {self.approval!r}: use 'none' or 'required'")
        return self.approval_operator(self._body()).execute(context)

    def _body(self) -> str:
        from llmops.evaluation.gate import read_report, report_markdown
        from llmops_airflow_plugin import PREFIX, api_base_url, report_url

        report = read_report(self.gate_report)
        pages = api_base_url() + PREFIX
        gate = report_url(self.gate_report, "gate", pages)
        lineage = f"{pages}/lineage/{self.model_name}/{self.version}"
        return (
            report_markdown(report)
            + f"\n[Gate report]({gate}) · [Lineage of version {self.version}]({lineage})\n\n"
            "Approve: promote to champion. Reject: keep the champion. "
            "No answer before the timeout: Reject.\n"
        )

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        from llmops.reports.lineage import record_approval

        approval = self.approval_operator()
        if "error" in event:  # no answer and no default: the provider raises
            return approval.execute_complete(context, event)
        # The scheduler applies the defaults (Reject) at the deadline and resumes with `timedout`.
        timed_out = bool(event.get("timedout"))
        chosen = (event.get("chosen_options") or [self.REJECT])[0]
        by = event.get("responded_by_user") or {}
        who = "timeout" if timed_out else ((by.get("name") or by.get("id")) if isinstance(by, dict) else str(by))
        at = event.get("responded_at")
        reason = (event.get("params_input") or {}).get(REASON) or ("no decision before the timeout" if timed_out else "")
        record_approval(
            airflow_settings(),
            name=self.model_name,
            version=str(self.version),
            decision="approved" if chosen == self.APPROVE else "rejected",
            by=who,
            at=at.isoformat() if hasattr(at, "isoformat") else (str(at) if at else None),
            reason=reason,
        )
        ret = approval.execute_complete(context, event)
        # The summary keys the plugin's extra links read: Report (the gate report), Lineage, Model version.
        return {**ret, "approval": "approved" if chosen == self.APPROVE else "rejected", **self._links()}

    def _links(self) -> dict[str, Any]:
        return {"report_uri": self.gate_report, "decision": "approval", "registered_model_name": self.model_name,
                "version": str(self.version)}
