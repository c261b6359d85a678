import ast
import re
from pathlib import Path

import pytest

from llmops.exceptions import ConfigError
from llmops.settings import (
    RENAMED,
    SECTION_MODELS,
    SECTIONS,
    ProcessSettings,
    Settings,
    env_value,
    load_settings,
    process_settings,
    settings_markdown,
)

REPO = Path(__file__).resolve().parents[2]


def test_local_mode_needs_no_setting(data_root):
    s = load_settings(environ={})
    assert s.mode == "local"
    assert s.landing.endswith("/landing")
    assert s.vector_store.endswith("processed/milvus.db")
    assert s.mlflow_tracking.startswith("sqlite:///")


def test_precedence_override_env_airflow():
    s = load_settings(
        airflow_section={"namespace": "from-airflow", "chunk_size": "300", "step_cpu": "4"},
        environ={"LLMOPS_NAMESPACE": "from-env"},
        step_cpu="8",
    )
    assert s.kubernetes.namespace == "from-env"
    assert s.rag.chunk_size == 300
    assert s.kubernetes.step_cpu == "8"


def test_fields_live_in_sections_under_flat_unique_names():
    assert SECTIONS["chunk_size"] == "rag" and SECTIONS["namespace"] == "kubernetes" and SECTIONS["mode"] is None
    names = [n for model in SECTION_MODELS.values() for n in model.model_fields]
    assert len(names) == len(set(names)), "a field name is in two sections: its LLMOPS_* variable would be ambiguous"
    assert not set(names) & set(ProcessSettings.model_fields)
    assert set(Settings.model_fields) == {"mode", *SECTION_MODELS}


def test_naming_rule_raw_uri_fields_resolve_to_properties_without_the_suffix():
    """Every raw `<x>_uri` field has the resolved property `<x>` on Settings (`drift_index_uri` excepted:
    the drift step resolves it from its reference), and no property is named like a raw field."""
    s = load_settings(environ={}, data_root="/srv/d")
    raw = [n for n, sec in SECTIONS.items() if sec and n.endswith("_uri")]
    assert raw, "no _uri fields?"
    for name in raw:
        if name == "drift_index_uri":
            continue
        resolved = name.removesuffix("_uri")
        assert isinstance(getattr(type(s), resolved, None), property), f"{name} has no resolved property {resolved}"
        assert isinstance(getattr(s, resolved), str)
    properties = {n for n, v in vars(Settings).items() if isinstance(v, property)}
    assert not properties & set(SECTIONS)
    assert s.base_model == "/srv/d/models/tiny-llama" and s.training.base_model_uri is None
    set_ = load_settings(environ={"LLMOPS_BASE_MODEL_URI": "s3://m/base", "LLMOPS_SPARK_IMAGE_URI": "spark:1"})
    assert set_.base_model == "s3://m/base" and set_.spark_image == "spark:1"
    assert load_settings(environ={"LLMOPS_IMAGE": "w:2"}).spark_image == "w:2"


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_a_renamed_setting_fails_naming_its_new_name(old, new):
    with pytest.raises(ConfigError, match=f"LLMOPS_{old.upper()} .* renamed to LLMOPS_{new.upper()}"):
        load_settings(environ={f"LLMOPS_{old.upper()}": "x"})


def test_json_fields_from_env():
    s = load_settings(environ={"LLMOPS_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]',
                               "LLMOPS_NODE_SELECTOR": '{"pool": "a100"}'})
    assert s.kubernetes.tolerations == [{"key": "gpu", "operator": "Exists"}]
    assert s.kubernetes.node_selector == {"pool": "a100"}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"LLMOPS_MODE": "cloud"}, "mode = 'cloud'"),
        ({"LLMOPS_NAMESPACE": "Bad_NS"}, "namespace = 'Bad_NS': must be a DNS-1123 label"),
        ({"LLMOPS_CHUNK_SIZE": "100", "LLMOPS_CHUNK_OVERLAP": "100"}, "chunk_overlap (100) must be smaller"),
        ({"LLMOPS_TOLERATIONS": "[not json"}, "not valid JSON"),
        ({"LLMOPS_STEP_MEMORY": "lots"}, "'8Gi'; set LLMOPS_STEP_MEMORY or [llmops] step_memory"),
        ({"LLMOPS_DRIFT_SCHEDULE": "every hour"}, "drift_schedule = 'every hour': 'every hour' is not a cron"),
        ({"LLMOPS_LEASE_HEARTBEAT_SECONDS": "100"}, "must be at most half of lease_stale_seconds"),
    ],
)
def test_bad_values_name_field_value_and_fix(env, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert fragment in str(err.value)
    assert "rag." not in str(err.value) and "kubernetes." not in str(err.value)


def test_unknown_setting_is_rejected():
    with pytest.raises(ConfigError, match="chunk_sise: is not a known setting"):
        load_settings(environ={}, chunk_sise=3)
    with pytest.raises(ConfigError, match=r"\[llmops\] Airflow config.*chunk_sise: is not a known setting"):
        load_settings(airflow_section={"chunk_sise": "3"}, environ={})
    assert load_settings(environ={"LLMOPS_SOMETHING_ELSE": "x"}).mode == "local"


def test_env_round_trip():
    s = load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000",
                      kueue_queue="q", tolerations=[{"key": "a"}])
    again = load_settings(environ=s.to_env())
    assert again.model_dump() == s.model_dump()
    assert s.to_env()["LLMOPS_KUEUE_QUEUE"] == "q" and s.to_env()["LLMOPS_TOLERATIONS"] == '[{"key": "a"}]'


def test_with_overrides_keeps_what_was_set_and_revalidates():
    s = load_settings(environ={"LLMOPS_NAMESPACE": "team", "LLMOPS_CHUNK_SIZE": "300"})
    t = s.with_overrides(chunk_overlap=64, image=None)
    assert (t.kubernetes.namespace, t.rag.chunk_size, t.rag.chunk_overlap) == ("team", 300, 64)
    assert "chunk_overlap" not in s.rag.model_fields_set
    with pytest.raises(ConfigError, match="chunk_overlap \\(300\\) must be smaller"):
        s.with_overrides(chunk_overlap=300)


def test_settings_take_flat_names_and_whole_sections(monkeypatch):
    monkeypatch.setenv("LLMOPS_CHUNK_SIZE", "321")
    s = Settings(namespace="team", chunk_size=300, storage={"data_root": "/srv/d"})
    assert (s.kubernetes.namespace, s.rag.chunk_size, s.storage.data_root) == ("team", 300, "/srv/d")
    assert Settings().rag.chunk_size == 200, "Settings(...) is the values given; load_settings reads the environment"
    assert load_settings().rag.chunk_size == 321


def test_remote_output_requires_vector_store():
    s = load_settings(environ={}, processed_uri="s3://bucket/processed")
    with pytest.raises(ConfigError, match="vector_store_uri is required"):
        _ = s.vector_store


def test_schedules_accept_cron_presets_and_none():
    s = load_settings(environ={"LLMOPS_DRIFT_SCHEDULE": "*/15 * * * *", "LLMOPS_LANDING_SCHEDULE": "None",
                               "LLMOPS_RETRAIN_SCHEDULE": "@daily"})
    assert s.schedule_of(s.drift.drift_schedule) == "*/15 * * * *"
    assert s.schedule_of(s.rag.landing_schedule) is None
    assert s.schedule_of(s.training.retrain_schedule) == "@daily"


def test_kubernetes_mode_refuses_local_storage_that_pods_cannot_share():
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"LLMOPS_MODE": "kubernetes", "LLMOPS_DATA_ROOT": "/srv/llmops"})
    message = str(err.value)
    assert "runs_uri" in message and "data_root = '/srv/llmops'" in message and "s3://" in message
    assert "mlflow_tracking_uri is unset" in message
    ok = load_settings(environ={"LLMOPS_MODE": "kubernetes", "LLMOPS_DATA_ROOT": "s3://b/llmops",
                                "LLMOPS_MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert ok.runs == "s3://b/llmops/runs"
    assert "LLMOPS_DATA_ROOT" in ok.to_env()
    derived = load_settings(environ={"LLMOPS_MODE": "kubernetes", "LLMOPS_LANDING_URI": "s3://b/l",
                                     "LLMOPS_PROCESSED_URI": "s3://b/p", "LLMOPS_DATASET_ROOT_URI": "s3://b/d",
                                     "LLMOPS_RUNS_URI": "s3://b/r", "LLMOPS_STATE_URI": "s3://b/s",
                                     "LLMOPS_MANIFESTS_URI": "s3://b/m", "LLMOPS_TRAFFIC_URI": "s3://b/t",
                                     "LLMOPS_MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert "LLMOPS_DATA_ROOT" not in derived.to_env(), "the Airflow host's data root must not be pinned into pods"


def test_process_settings_and_one_setting_from_the_environment():
    p = process_settings({"LLMOPS_GPUS": "2", "LLMOPS_TORCH_THREADS": "", "LLMOPS_AIRFLOW_PORT": "8081"})
    assert (p.gpus, p.torch_threads, p.airflow_port, p.embedding_cache) == (2, 0, 8081, None)
    with pytest.raises(ConfigError, match="gpus = '-1': .*; set LLMOPS_GPUS"):
        process_settings({"LLMOPS_GPUS": "-1"})
    assert env_value("s3_endpoint_url", {"LLMOPS_S3_ENDPOINT_URL": "http://minio:9000"}) == "http://minio:9000"
    assert env_value("s3_endpoint_url", {}) is None
    assert env_value("chunk_size", {"LLMOPS_CHUNK_SIZE": "300"}) == 300
    with pytest.raises(ConfigError, match="LLMOPS_CHUNK_SIZE = 'many': Input should be a valid integer"):
        env_value("chunk_size", {"LLMOPS_CHUNK_SIZE": "many"})
    with pytest.raises(ConfigError, match="LLMOPS_CHUNK_SIZE = '3': Input should be greater than or equal to 16"):
        env_value("chunk_size", {"LLMOPS_CHUNK_SIZE": "3"})


def test_settings_are_pydantic_settings_reading_only_their_own_sources(monkeypatch, tmp_path):
    """pydantic-settings reads the variables, through the sources of `settings_customise_sources` alone: an
    injected environment replaces the process's, and no `.env` file is read."""
    from pydantic_settings import BaseSettings

    assert issubclass(Settings, BaseSettings) and issubclass(ProcessSettings, BaseSettings)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LLMOPS_CHUNK_SIZE=999\nLLMOPS_GPUS=7\n")
    monkeypatch.setenv("LLMOPS_CHUNK_SIZE", "321")
    monkeypatch.setenv("LLMOPS_GPUS", "3")
    assert load_settings(environ={}).rag.chunk_size == 200
    assert load_settings().rag.chunk_size == 321
    assert process_settings({}).gpus == 0
    assert process_settings().gpus == ProcessSettings().gpus == 3, "ProcessSettings() reads this process's variables"
    assert ProcessSettings(gpus=1).gpus == 1
    assert env_value("gpus") == 3 and env_value("gpus", {}) is None


def test_an_override_section_outranks_the_environment_field_by_field():
    s = load_settings(environ={"LLMOPS_DATA_ROOT": "/env", "LLMOPS_LEASE_WAIT_SECONDS": "9"},
                      storage={"lease_wait_seconds": 2}, lease_stale_seconds=60)
    assert (s.storage.data_root, s.storage.lease_wait_seconds, s.storage.lease_stale_seconds) == ("/env", 2, 60)
    with pytest.raises(ConfigError, match=r"invalid settings \(override\): chunk_sise: is not a known setting"):
        Settings(chunk_sise=3)


def test_process_settings_leave_other_llmops_variables_alone():
    p = process_settings({"LLMOPS_CHUNK_SIZE": "300", "LLMOPS_NAMESPACE": "Bad_NS", "LLMOPS_GPUS": "1"})
    assert p.gpus == 1
    with pytest.raises(ConfigError, match="LLMOPS_MODEL_CACHE .* renamed to LLMOPS_EMBEDDING_CACHE"):
        process_settings({"LLMOPS_MODEL_CACHE": "/c"})
    with pytest.raises(ConfigError, match="'chunk_sise' is not a known setting"):
        env_value("chunk_sise", {})

# --- the README table ---------------------------------------------------------------------------------


def test_markdown_table_lists_every_setting_by_section():
    table = settings_markdown()
    for name in SECTIONS:
        assert f"| `{name}` | `LLMOPS_{name.upper()}` |" in table
    for name in ProcessSettings.model_fields:
        assert f"| `{name}` | `LLMOPS_{name.upper()}` |" in table
    titles = re.findall(r"^\| \*\*`([a-z.]+)`\*\*", table, re.M)
    assert titles == ["settings", *[f"settings.{s}" for s in SECTION_MODELS], "process"]


def test_readme_settings_table_is_current():
    readme = (REPO / "README.md").read_text()
    table = settings_markdown()
    assert table in readme, "the README's settings table is stale: paste the output of `llmops settings --markdown`"


# --- every LLMOPS_* variable is read through llmops.settings ------------------------------------------

SOURCE_DIRS = ("llmops", "operators", "dags", "plugins", "spark_jobs")


def _env_reads(path: Path) -> list[str]:
    """`os.environ[...]`, `os.environ.get(...)`, `os.getenv(...)`, `... in os.environ` of an `LLMOPS_*`
    name, given literally or through a module constant."""
    tree = ast.parse(path.read_text())
    constants = {
        t.id for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        and isinstance(n.value.value, str) and n.value.value.startswith("LLMOPS_") for t in n.targets
        if isinstance(t, ast.Name)
    }

    def llmops_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.startswith("LLMOPS_")
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            return str(node.values[0].value).startswith("LLMOPS_")
        return isinstance(node, ast.Name) and node.id in constants

    def environ(node: ast.AST) -> bool:
        return ast.unparse(node) in ("os.environ", "environ")

    found = []
    for n in ast.walk(tree):
        key = None
        if isinstance(n, ast.Subscript) and environ(n.value):
            key = n.slice
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.args:
            if (n.func.attr in ("get", "pop", "setdefault") and environ(n.func.value)) or ast.unparse(n.func) == "os.getenv":
                key = n.args[0]
        elif isinstance(n, ast.Compare) and any(environ(c) for c in n.comparators):
            key = n.left
        if key is not None and llmops_name(key):
            found.append(f"{path.name}:{n.lineno}: {ast.unparse(n)}")
    return found


def test_no_module_but_settings_reads_an_llmops_variable():
    reads = [hit for d in SOURCE_DIRS for p in sorted((REPO / d).rglob("*.py")) if p.name != "settings.py" or
             p.parent.name != "llmops" for hit in _env_reads(p)]
    assert reads == [], "read these through llmops.settings (load_settings, process_settings, env_value)"
    assert _env_reads(REPO / "llmops" / "settings.py") == []  # it reads the mapping whole, never a name


def test_the_env_read_check_finds_a_read(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('import os\nNAME = "LLMOPS_X"\na = os.environ.get("LLMOPS_GPUS")\nb = os.environ[NAME]\n'
                     'c = "LLMOPS_Y" in os.environ\nd = os.environ.get("HOME")\n')
    assert len(_env_reads(probe)) == 3
