"""Test isolation: every session gets its own data root and Airflow home, offline model hubs, and a
moto S3 server on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "TESTS_SHARED_DIR"
"""Overrides where `../shared` is looked for (a path; a missing one makes its tests skip)."""

# Set before anything imports Airflow or reads settings.
_session_root = Path(tempfile.mkdtemp(prefix="llmops-tests-"))
os.environ["LLMOPS_DATA_ROOT"] = str(_session_root / "data")
os.environ["AIRFLOW_HOME"] = str(_session_root / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
for key in [k for k in os.environ if k.startswith("LLMOPS_") and k != "LLMOPS_DATA_ROOT"]:
    del os.environ[key]


# --- ../shared: real corpora and upstream CRDs beside the checkout (CI has it; a clone does not) -----------


def shared_root() -> Path:
    """`../shared` beside the checkout (a git worktree one folder deeper finds it one folder up), or
    `$TESTS_SHARED_DIR`. The folder may be absent: tests that need it skip."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV])
    for parent in (REPO.parent, REPO.parent.parent):
        if (parent / "shared").is_dir():
            return parent / "shared"
    return REPO.parent / "shared"


def shared_path(name: str) -> Path:
    """`../shared/<name>` (may not exist)."""
    return shared_root() / name


def require_shared(name: str) -> Path:
    """`../shared/<name>`, or skip the calling test with a reason naming the folder."""
    path = shared_path(name)
    if not path.is_dir():
        pytest.skip(f"needs the folder {path} (../shared/{name} beside the checkout), which is absent")
    return path


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires_shared(name): needs ../shared/<name> beside the checkout; skips when it is absent"
    )


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires_shared"):
        for name in mark.args:
            require_shared(name)


@pytest.fixture(autouse=True)
def _no_cluster_crds(monkeypatch):
    """No test reads CRDs from a real cluster: in mode kubernetes, validation would use the machine's
    kubeconfig (tests of the cluster source pass a stand-in `ClusterCRDs`)."""
    import llmops.k8s.validate

    monkeypatch.setattr(llmops.k8s.validate, "cluster_crds", lambda: None)


@pytest.fixture
def shared_dir():
    """`shared_dir("crds")` -> the folder ../shared/crds, or skip the test naming the absent folder."""
    return require_shared


@pytest.fixture(scope="session")
def data_root() -> Path:
    return Path(os.environ["LLMOPS_DATA_ROOT"])


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database for dag.test() and DagBag tests (once per session)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / "airflow.db").exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
    return home


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The project's sample data (corpus + finetune.jsonl), written once per session."""
    from llmops.dev.sample_data import write_sample_data

    out = tmp_path_factory.mktemp("sample")
    write_sample_data(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1; yields its endpoint URL and sets the AWS environment for it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "LLMOPS_S3_ENDPOINT_URL")}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        LLMOPS_S3_ENDPOINT_URL=endpoint,
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the moto server."""
    import uuid

    from llmops import storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """The project's DAG folder parsed once, as the dag-processor would."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def run_dag(dagbag):
    """Run one of the project's DAGs with `dag.test()` and return the finished DagRun."""

    def _run(dag_id: str, conf: dict | None = None, **kwargs):
        dag = dagbag.get_dag(dag_id)
        assert dag is not None, f"DAG {dag_id} not found; import errors: {dagbag.import_errors}"
        return dag.test(run_conf=conf, **kwargs)

    return _run


def task_states(dagrun) -> dict[str, str]:
    """task_id -> state of a finished DagRun from dag.test()."""
    return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
