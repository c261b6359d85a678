"""llmops.resources: the user's file first, then the packaged one; every default the settings name exists
as a packaged file, from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmops import resources
from llmops.exceptions import ConfigError
from llmops.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working directory with no checkout in it (a local step runs in the Airflow worker's)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_default_the_settings_name_is_packaged(elsewhere):
    for settings in (Settings(), Settings(mode="kubernetes", data_root="s3://b/llmops",
                                          mlflow_tracking_uri="http://mlflow:5000")):
        for name in (settings.serving.gate_policy, settings.deploy_config):
            resolved = Path(resources.resolve(name))
            assert resolved.is_absolute() and resolved.is_file(), name
            assert resolved.as_posix().endswith(name)


def test_packaged_files_are_the_checkouts_in_an_editable_install():
    # `pip install -e` (make install) maps each package to its folder: edits show up without a reinstall.
    assert resources.packaged("examples/local/gate.yaml") == REPO / "examples" / "local" / "gate.yaml"
    assert resources.templates_dir() == REPO / "k8s_templates"
    assert resources.spark_entrypoint() == REPO / "spark_jobs" / "preprocess.py"
    assert sorted(p.name for p in resources.lm_eval_tasks_dir().glob("*.yaml"))


def test_the_users_file_wins(elsewhere):
    mine = elsewhere / "examples" / "local" / "gate.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("metrics: []\n")
    assert resources.resolve("examples/local/gate.yaml") == "examples/local/gate.yaml"
    assert resources.resolve(str(mine)) == str(mine)


@pytest.mark.parametrize("uri", ["s3://bucket/config/gate.yaml", "examples/local/nope.yaml", "my/gate.yaml", ""])
def test_other_names_are_returned_unchanged(elsewhere, uri):
    # The caller reports a missing file with the name the user gave.
    assert resources.resolve(uri) == uri


def test_missing_policy_and_config_are_named(elsewhere):
    from llmops.deploy.config import load_config
    from llmops.evaluation.gate import load_policy

    with pytest.raises(ConfigError, match=r"examples/local/nope\.yaml"):
        load_policy("examples/local/nope.yaml")
    with pytest.raises(ConfigError, match=r"examples/gpu/nope\.yaml: file not found"):
        load_config("examples/gpu/nope.yaml")


def test_packaged_example_configs_load(elsewhere):
    from llmops.deploy.config import load_config
    from llmops.evaluation.gate import load_policy

    assert load_policy("examples/local/gate.yaml").metrics
    assert load_config("examples/gpu/deploy.yaml").gpus == 2


def test_only_project_folders_are_packaged():
    with pytest.raises(ConfigError, match="must start with one of examples, k8s_templates, spark_jobs"):
        resources.packaged("tests/conftest.py")


def test_templates_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv(resources.TEMPLATES_ENV, str(tmp_path))
    assert resources.templates_dir() == tmp_path
    monkeypatch.setenv(resources.TEMPLATES_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="LLMOPS_TEMPLATES_DIR=.*missing: not a folder"):
        resources.templates_dir()


def test_spark_application_runs_the_entrypoint_the_worker_image_links():
    # The Dockerfile links the packaged entrypoint to this path; the template must name the same file.
    values = yaml.safe_load((resources.templates_dir() / "spark" / "values.yaml").read_text())
    assert values["mainApplicationFile"] == "local:///opt/llmops/spark_jobs/preprocess.py"
    assert "/opt/llmops/spark_jobs/preprocess.py" in (REPO / "Dockerfile").read_text()
    assert resources.spark_entrypoint().is_file()
