"""Every DAG file: imports cleanly, is cheap to parse, and follows the house conventions."""

from __future__ import annotations

import pytest

from llmops.dev.dag_parse import DAGS_DIR, HEAVY, MAX_RATIO, measure

DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {d.removesuffix(".py") for d in (p.name for p in DAG_FILES)} <= set(dagbag.dag_ids)


PARSE_RATIO_ABOVE_GOAL = {
    # Both run on a cron: Airflow's cron timetable modules (airflow.timetables.*, croniter), which a
    # trivial DAG with schedule=None never loads, cost ~20 ms of the ~35-50 ms the trivial DAG takes.
    # Measured 1.45-1.94x after the asset-URI and settings fixes (was 11.5x).
    "llmops_drift.py": 2.5,
    # The same, plus 12 tasks and 17 typed Params: Airflow validates every Param's JSON schema and
    # deep-copies the Params into each task at parse time (~27 ms), and the file needs the approval
    # operator (Airflow's HITL module) and the trigger and training-config modules. Measured 2.8-3.1x
    # after the fixes (was 12.4x).
    "llmops_finetune.py": 3.5,
}
"""Files allowed above `MAX_RATIO`, with the reason; any other file must parse within it."""


@pytest.fixture(scope="module")
def parse_costs(airflow_db):
    """`llmops bench parse` itself: each file's own parse after `airflow.sdk`, fresh processes, median."""
    return measure(repeats=5)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_library(path, parse_costs):
    heavy = parse_costs["files"][path.name]["heavy_imports"]
    assert heavy == [], f"{path.name} imports {heavy} at parse time (not allowed: {HEAVY})"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parse_cost_within_budget_of_a_trivial_dag(path, parse_costs):
    limit = PARSE_RATIO_ABOVE_GOAL.get(path.name, MAX_RATIO)
    cost = parse_costs["files"][path.name]
    trivial = parse_costs["trivial"]["parse_s"]
    assert cost["ratio"] <= limit, (
        f"{path.name} takes {cost['parse_s'] * 1000:.0f} ms to parse after airflow.sdk, {cost['ratio']:.2f}x "
        f"a trivial DAG ({trivial * 1000:.0f} ms; allowed {limit}x): find the import with "
        f"`python -X importtime` and move it into the task that needs it"
    )


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_conventions(path, dagbag):
    dag = dagbag.get_dag(path.stem)
    assert dag is not None, f"{path.name} must define a DAG whose dag_id is the file name"
    assert dag.doc_md and dag.doc_md.strip(), f"{path.name}: doc_md=__doc__ is missing"
    for name in dag.params:
        param = dag.params.get_param(name)
        schema = dict(param.schema)
        assert schema.get("title"), f"{dag.dag_id} Param {name!r} has no title"
        assert schema.get("description") or getattr(param, "description", None), (
            f"{dag.dag_id} Param {name!r} has no description"
        )
        if schema.get("type") in ("integer", "number"):
            assert "minimum" in schema and "maximum" in schema, f"{dag.dag_id} Param {name!r} has no bounds"
