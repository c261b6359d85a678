"""One get-or-create rule for the MLflow experiment: whichever step creates it, artifacts land in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mlflow")


@pytest.mark.parametrize("first", ["registry", "drift"])
def test_experiment_artifact_root_does_not_depend_on_the_first_step(tmp_path, first):
    from mlflow.tracking import MlflowClient

    from llmops.drift.report import mlflow_client
    from llmops.registry import ensure_experiment, experiment_id
    from llmops.settings import load_settings

    settings = load_settings(
        environ={},
        mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        mlflow_artifacts_uri=str(tmp_path / "artifacts"),
        mlflow_experiment="llmops-test",
    )
    if first == "registry":
        exp = ensure_experiment(settings)
        _, again = mlflow_client(settings)
    else:
        _, exp = mlflow_client(settings)
        again = ensure_experiment(settings)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking)
    assert again == exp == experiment_id(client, settings)
    location = client.get_experiment(exp).artifact_location
    assert location == (tmp_path / "artifacts").resolve().as_uri()
    assert Path(tmp_path / "artifacts").is_dir()
