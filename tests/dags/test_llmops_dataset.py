"""dag.test() of the dataset DAG in local mode: the real `llmops dataset build` step, its asset event, and
a rebuild of an unchanged corpus that keeps the hash (the fine-tune DAG then finds nothing new)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import task_states
from tests.dags.test_rag_dags import asset_events

pytestmark = pytest.mark.slow

TASKS = {"dataset_inputs": "success", "build": "success", "publish_dataset": "success"}


def test_params_and_wiring(dagbag):
    dag = dagbag.get_dag("llmops_dataset")
    assert dag is not None, dagbag.import_errors
    assert [t.task_id for t in dag.topological_sort()] == list(TASKS)
    assert {a.name for a in dag.get_task("publish_dataset").outlets} == {"llmops_dataset"}
    args = dag.get_task("build").arguments
    assert args[args.index("--steer") + 1] == "{{ ti.xcom_pull(task_ids='dataset_inputs')['steer'] }}"
    assert dag.params.get_param("generator").schema["enum"] == ["extractive", "teacher"]


def test_build_publishes_the_version_and_an_unchanged_corpus_keeps_it(run_dag, data_root):
    from tests.llmops.dataset.conftest import write_corpus, write_processed

    root = Path(data_root) / "dataset-dag-test"
    processed = write_processed(write_corpus(root / "corpus"), root / "processed")
    conf = {"corpus_uri": processed, "dataset_root": str(root / "datasets"), "budget": 0}

    first = run_dag("llmops_dataset", conf=conf)
    assert task_states(first) == TASKS
    (event,) = asset_events(first.run_id, "publish_dataset")
    assert event["trigger"] == "manual" and event["items_generated"] > 0 and event["rows_eval"] > 0
    assert Path(event["dataset_uri"], "dataset.json").exists()
    assert event["dataset_uri"].startswith(str(root / "datasets"))

    again = run_dag("llmops_dataset", conf=conf)
    (rebuilt,) = asset_events(again.run_id, "publish_dataset")
    assert rebuilt["dataset_hash"] == event["dataset_hash"] and rebuilt["items_generated"] == 0
