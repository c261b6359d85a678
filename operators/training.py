"""The fine-tune DAG's `resolve_inputs` task: check what the run will train on before a GPU is requested.

A thin adapter around `llmops.training.inputs.resolve_inputs`; its XCom is the `ResolvedInputs` summary
(`base_model`, `dataset`, `eval_dataset`, `dataset_hash`, the corpus snapshot). A classic operator, not
`@task`: `airflow.sdk.task` imports the standard provider's PythonOperator module, about 15 ms of every
parse of the DAG file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from llmops.settings import Settings
from llmops_operators.base import airflow_settings
from llmops_operators.s3 import uses_aws_connection

RESOLVE_INPUTS_DOC = "Check the base model and the dataset version; record the latest corpus snapshot (lineage)."


class ResolveInputsOperator(BaseOperator):
    """Check the base model and the dataset (`latest`: `triggered_dataset`, else the newest version under
    `dataset_root`) and record the corpus snapshot; every argument is templated.

    :param base_model: Hub id, local or s3:// folder; empty: the `base_model` setting.
    :param dataset: a dataset version or rows file, or `latest`.
    :param triggered_dataset: the dataset version of the triggering event (empty: none).
    """

    template_fields: Sequence[str] = ("base_model", "dataset", "triggered_dataset")
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        base_model: str,
        dataset: str,
        triggered_dataset: str | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("doc_md", RESOLVE_INPUTS_DOC)
        super().__init__(**kwargs)
        self.base_model = base_model
        self.dataset = dataset
        self.triggered_dataset = triggered_dataset
        self.settings = settings

    @uses_aws_connection
    def execute(self, context: Any) -> dict[str, Any]:
        from llmops.training.inputs import resolve_inputs

        return resolve_inputs(
            self.settings or airflow_settings(),
            base_model=self.base_model,
            dataset=self.dataset,
            triggered_dataset=self.triggered_dataset or None,
        )
