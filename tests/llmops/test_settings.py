import pytest

from llmops.exceptions import ConfigError
from llmops.settings import Settings, load_settings, settings_markdown


def test_local_mode_needs_no_setting(data_root):
    s = load_settings(environ={})
    assert s.mode == "local"
    assert s.landing.endswith("/landing")
    assert s.vector_store.endswith("processed/milvus.db")
    assert s.mlflow_uri.startswith("sqlite:///")


def test_precedence_override_env_airflow():
    s = load_settings(
        airflow_section={"namespace": "from-airflow", "chunk_size": "300", "step_cpu": "4"},
        environ={"LLMOPS_NAMESPACE": "from-env"},
        step_cpu="8",
    )
    assert s.namespace == "from-env"
    assert s.chunk_size == 300
    assert s.step_cpu == "8"


def test_json_fields_from_env():
    s = load_settings(environ={"LLMOPS_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]',
                               "LLMOPS_NODE_SELECTOR": '{"pool": "a100"}'})
    assert s.tolerations == [{"key": "gpu", "operator": "Exists"}]
    assert s.node_selector == {"pool": "a100"}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"LLMOPS_MODE": "cloud"}, "mode = 'cloud'"),
        ({"LLMOPS_NAMESPACE": "Bad_NS"}, "DNS-1123"),
        ({"LLMOPS_CHUNK_SIZE": "100", "LLMOPS_CHUNK_OVERLAP": "100"}, "chunk_overlap (100) must be smaller"),
        ({"LLMOPS_TOLERATIONS": "[not json"}, "not valid JSON"),
        ({"LLMOPS_STEP_MEMORY": "lots"}, "Kubernetes quantity"),
        ({"LLMOPS_DRIFT_SCHEDULE": "every hour"}, "not a cron expression"),
    ],
)
def test_bad_values_name_field_value_and_fix(env, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert fragment in str(err.value)


def test_unknown_setting_is_rejected():
    with pytest.raises(ConfigError, match="not a known setting"):
        load_settings(environ={}, chunk_sise=3)


def test_env_round_trip():
    s = load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000", kueue_queue="q", tolerations=[{"key": "a"}])
    again = load_settings(environ=s.to_env())
    assert again.model_dump() == {**s.model_dump(), "data_root": again.data_root}


def test_remote_output_requires_vector_store():
    s = load_settings(environ={}, processed_uri="s3://bucket/processed")
    with pytest.raises(ConfigError, match="vector_store_uri is required"):
        _ = s.vector_store


def test_markdown_table_lists_every_setting():
    table = settings_markdown()
    for name in Settings.model_fields:
        assert f"`LLMOPS_{name.upper()}`" in table


def test_schedules_accept_cron_presets_and_none():
    s = load_settings(environ={"LLMOPS_DRIFT_SCHEDULE": "*/15 * * * *", "LLMOPS_LANDING_SCHEDULE": "None",
                               "LLMOPS_RETRAIN_SCHEDULE": "@daily"})
    assert s.schedule_of(s.drift_schedule) == "*/15 * * * *"
    assert s.schedule_of(s.landing_schedule) is None
    assert s.schedule_of(s.retrain_schedule) == "@daily"


def test_kubernetes_mode_refuses_local_storage_that_pods_cannot_share():
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"LLMOPS_MODE": "kubernetes", "LLMOPS_DATA_ROOT": "/srv/llmops"})
    message = str(err.value)
    assert "runs_uri" in message and "data_root = '/srv/llmops'" in message and "s3://" in message
    assert "mlflow_tracking_uri is unset" in message
    ok = load_settings(environ={"LLMOPS_MODE": "kubernetes", "LLMOPS_DATA_ROOT": "s3://b/llmops",
                                "LLMOPS_MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert ok.runs == "s3://b/llmops/runs"
