"""Every DAG file: imports cleanly, is cheap to parse, and follows the house conventions."""

from __future__ import annotations

import pytest

from llmops.dag_parse import DAGS_DIR, HEAVY, _measure

DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {d.removesuffix(".py") for d in (p.name for p in DAG_FILES)} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_library(path, airflow_db):
    import os

    result = _measure(path, warm=False, env=dict(os.environ))
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at parse time (not allowed: {HEAVY})"


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
