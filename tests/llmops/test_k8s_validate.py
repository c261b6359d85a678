"""Validation of Kubernetes objects: built-in kinds (strict), and custom resources against the cluster's
CRDs, a crd_dir, or the project's own schemas, in that order, with the source reported per object."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from llmops.exceptions import ConfigError
from llmops.k8s.validate import (
    BUILTIN,
    CLUSTER,
    CRD_DIR,
    PROJECT,
    ClusterCRDs,
    SchemaSources,
    check_object,
    cluster_crds,
    project_schemas,
    schema_sources,
    validate_dir,
    validate_object,
)
from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "llmops" / "deploy" / "golden"
PROJECT_ONLY = SchemaSources()
"""No cluster, no crd_dir: the project's schemas."""

CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("sparkoperator.k8s.io/v1beta2", "SparkApplication"),
}


def _pod(**container):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", **container}]},
    }


def _spark_app() -> dict:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "s"},
        "spec": {"type": "Python", "mode": "cluster", "sparkVersion": "4.0.0",
                 "mainApplicationFile": "local:///job.py", "driver": {"cores": 1}, "executor": {"instances": 1}},
    }


# --- every object the project renders: project schemas and upstream CRDs ------------------------------------


def _rendered_objects() -> list[dict]:
    """Every object of the golden renders (examples/gpu, its canary, kserve, merged + HPA, examples/local),
    the two examples rendered now, and the preprocessing SparkApplication."""
    from llmops.deploy.config import load_config
    from llmops.deploy.model import ServedModel
    from llmops.deploy.render import render
    from llmops.rag.sparkapp import render_spark_application
    from llmops.settings import Settings, load_settings

    objects = []
    for f in sorted(GOLDEN.rglob("*.yaml")):
        if f.name != "kustomization.yaml":
            objects += [d for d in yaml.safe_load_all(f.read_text()) if d]
    settings = Settings(data_root="/srv/llmops", namespace="llmops", model_cache_pvc="llmops-model-cache")
    champion = ServedModel(name="llmops-assistant", version="3", uri="models:/llmops-assistant@champion",
                           base="/srv/llmops/models/tiny-llama", adapter="/srv/llmops/adapters/3", lora_rank=8)
    for example in ("examples/local/deploy.yaml", "examples/gpu/deploy.yaml"):
        objects += render(champion, load_config(str(REPO / example), settings)).all_objects()
    k8s = load_settings(
        environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000",
        s3_credentials_secret="s3-creds", milvus_token_secret="milvus", hf_token_secret="hf",
    )
    objects.append(render_spark_application(k8s, ["--input", "s3://b/landing", "--output", "s3://b/processed"]))
    return objects


@pytest.fixture(scope="module")
def rendered_objects() -> list[dict]:
    return _rendered_objects()


def test_the_project_has_a_schema_for_every_custom_kind_it_renders(rendered_objects):
    emitted = {(o["apiVersion"], o["kind"]) for o in rendered_objects if check_object(o).source != BUILTIN}
    assert emitted == CUSTOM_KINDS
    assert set(project_schemas()) == CUSTOM_KINDS


def test_every_rendered_object_passes_the_project_schemas(rendered_objects):
    for obj in rendered_objects:
        checked = check_object(obj, sources=PROJECT_ONLY)
        assert checked.problems == [], [str(p) for p in checked.problems]
        assert checked.source in (BUILTIN, PROJECT)


def test_every_rendered_object_passes_the_upstream_crds(rendered_objects):
    crds = require_shared("crds")
    upstream = SchemaSources(crds)
    for obj in rendered_objects:
        checked = check_object(obj, sources=upstream)
        assert checked.problems == [], [str(p) for p in checked.problems]
        if checked.source != BUILTIN:
            assert checked.source == CRD_DIR and checked.detail.startswith(str(crds))


def test_the_project_schemas_are_valid_json_schemas():
    import jsonschema

    for fname, schema in project_schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False, fname


# --- the project schemas refuse broken objects, naming the field -------------------------------------------


def _one(objects: list[dict], kind: str) -> dict:
    """The first stable-track object of a kind (the stable InferenceService carries the autoscaling)."""
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind and not o["metadata"]["name"].endswith("-canary")))


@pytest.mark.parametrize(
    ("kind", "breaks", "path", "words"),
    [
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="15s"), "spec.endpoints.0", "intervall"),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval="15 seconds"), "spec.endpoints.0.interval", "15 seconds"),
        ("ServiceMonitor", lambda o: o["spec"].pop("selector"), "spec", "'selector' is a required property"),
        ("PodMonitor", lambda o: o["spec"]["selector"].update(matchLabel={}), "spec.selector", "matchLabel"),
        ("ScaledObject", lambda o: o["spec"].update(minReplicaCount=-1), "spec.minReplicaCount", "-1"),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0]["metadata"].pop("query"), "spec.triggers.0.metadata", "'query'"),
        ("ScaledObject", lambda o: o["spec"].update(triggers=[]), "spec.triggers", "[]"),
        ("HTTPRoute", lambda o: o["spec"]["rules"][0]["backendRefs"][0].update(weight="10"), "spec.rules.0.backendRefs.0.weight", "'10'"),
        ("HTTPRoute", lambda o: o["spec"]["rules"][0]["backendRefs"][0].pop("port"), "spec.rules.0.backendRefs.0", "'port'"),
        ("HTTPRoute", lambda o: o["spec"]["rules"][0]["matches"][0]["path"].update(value="api//v1"), "spec.rules.0.matches.0.path.value", "api//v1"),
        ("HTTPRoute", lambda o: o["spec"].update(hostnames=["LLM.example.com"]), "spec.hostnames.0", "LLM.example.com"),
        ("InferenceService", lambda o: o["spec"]["predictor"]["model"]["env"][0].update(valu="x"), "spec.predictor.model.env.0", "valu"),
        ("InferenceService", lambda o: o["spec"]["predictor"]["model"].pop("modelFormat"), "spec.predictor.model", "'modelFormat'"),
        ("InferenceService", lambda o: o["spec"]["predictor"]["autoScaling"]["metrics"][0].update(type="Custom"), "spec.predictor.autoScaling.metrics.0.type", "'Custom'"),
        ("ServingRuntime", lambda o: o["spec"]["containers"][0].update(ports=[{"containerPort": "8000"}]), "spec.containers.0.ports.0.containerPort", "'8000'"),
        ("SparkApplication", lambda o: o["spec"]["driver"].update(coress=1), "spec.driver", "coress"),
        ("SparkApplication", lambda o: o["spec"].update(type="Rust"), "spec.type", "Rust"),
        ("SparkApplication", lambda o: o["spec"]["executor"].update(instances=0), "spec.executor.instances", "0"),
        ("SparkApplication", lambda o: o["metadata"].update(labels={"a": 1}), "metadata.labels.a", "1"),
    ],
)
def test_a_broken_object_is_refused_by_the_project_schema_naming_the_field(rendered_objects, kind, breaks, path, words):
    obj = _one(rendered_objects, kind)
    breaks(obj)
    checked = check_object(obj, sources=PROJECT_ONLY)
    assert checked.source == PROJECT
    assert any(p.path == path and words in p.message for p in checked.problems), [str(p) for p in checked.problems]


def test_an_upstream_field_the_project_does_not_render_says_how_to_check_it():
    app = _spark_app()
    app["spec"]["driver"]["coreLimit"] = "1200m"  # valid upstream, never rendered by the project
    (problem,) = validate_object(app, sources=PROJECT_ONLY)
    assert "coreLimit" in problem.message and "set crd_dir" in problem.message


# --- sources and their order ---------------------------------------------------------------------------------


def test_builtin_valid_and_strict_unknown_field():
    assert validate_object(_pod()) == []
    problems = validate_object(_pod(bogus=1))
    assert problems and "bogus" in problems[0].message and problems[0].path == "spec.containers.0"
    assert check_object(_pod()).source == BUILTIN


def test_without_settings_custom_resources_use_the_project_schemas():
    checked = check_object(_spark_app())
    assert checked.problems == [] and checked.source == PROJECT
    assert checked.detail == "llmops/k8s/schemas/sparkoperator.k8s.io_v1beta2_SparkApplication.json"


def _crd(group: str, kind: str, plural: str, version: str, spec_schema: dict) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural},
            "scope": "Namespaced",
            "versions": [{
                "name": version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
            }],
        },
    }


# A deliberately narrow SparkApplication CRD: a source that is really used shows in what it refuses.
NARROW_SPARK = _crd(
    "sparkoperator.k8s.io", "SparkApplication", "sparkapplications", "v1beta2",
    {"type": "object", "properties": {"type": {"type": "string", "enum": ["Scala"]}}},
)


def test_crd_dir_comes_before_the_project_schemas(tmp_path, monkeypatch):
    (tmp_path / "spark.yaml").write_text(yaml.safe_dump(NARROW_SPARK))
    sources = SchemaSources(tmp_path)
    checked = check_object(_spark_app(), sources=sources)
    assert checked.source == CRD_DIR and checked.detail == str(tmp_path / "spark.yaml")
    assert any("'Python' is not one of ['Scala']" in p.message for p in checked.problems)
    # A kind the folder does not define falls through to the project's schema.
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {"selector": {}, "endpoints": [{"port": "http"}]}}
    assert check_object(monitor, sources=sources).source == PROJECT
    # The setting (LLMOPS_CRD_DIR) picks the folder.
    monkeypatch.setenv("LLMOPS_CRD_DIR", str(tmp_path))
    assert check_object(_spark_app()).source == CRD_DIR


def test_a_crd_dir_that_is_not_a_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"crd_dir = .*missing.* is not a folder"):
        SchemaSources(tmp_path / "missing")


def test_unknown_custom_resource_is_an_error_not_a_pass(tmp_path):
    thing = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    (problem,) = validate_object(thing, sources=PROJECT_ONLY)
    assert "no schema for custom resource example.com/v1 Thing" in problem.message and "crd_dir" in problem.message
    (problem,) = validate_object(thing, sources=SchemaSources(tmp_path))
    assert f"its CRD is not in {tmp_path}" in problem.message


class _Response:
    def __init__(self, body: dict):
        self.data = json.dumps(body).encode()


class StandInCustomObjectsApi:
    """Stand-in for `kubernetes.client.CustomObjectsApi` at the API boundary: discovery of the groups
    a fake cluster serves."""

    def __init__(self, crds: list[dict]):
        self.crds = crds
        self.calls: list[tuple[str, str]] = []

    def get_api_resources(self, group, version, **kw):
        from kubernetes.client.exceptions import ApiException

        assert kw["_preload_content"] is False and kw["_request_timeout"]
        self.calls.append((group, version))
        served = [c for c in self.crds if c["spec"]["group"] == group
                  and any(v["name"] == version for v in c["spec"]["versions"])]
        if not served:
            raise ApiException(status=404, reason="Not Found")
        return _Response({"kind": "APIResourceList", "groupVersion": f"{group}/{version}", "resources": [
            r for c in served for r in (
                {"name": c["spec"]["names"]["plural"], "kind": c["spec"]["names"]["kind"], "namespaced": True},
                {"name": c["spec"]["names"]["plural"] + "/status", "kind": c["spec"]["names"]["kind"]},
            )
        ]})


class StandInApiextensionsV1Api:
    """Stand-in for `kubernetes.client.ApiextensionsV1Api` at the API boundary: the CRDs of a fake cluster
    (or a fixed API error, e.g. 403 for a service account without rights on CRDs)."""

    def __init__(self, crds: list[dict], status: int | None = None):
        self.crds = {c["metadata"]["name"]: c for c in crds}
        self.status = status

    def read_custom_resource_definition(self, name, **kw):
        from kubernetes.client.exceptions import ApiException

        if self.status:
            raise ApiException(status=self.status, reason="Forbidden")
        if name not in self.crds:
            raise ApiException(status=404, reason="Not Found")
        return _Response(self.crds[name])


def test_the_cluster_comes_first_in_mode_kubernetes(tmp_path):
    pytest.importorskip("kubernetes")
    (tmp_path / "spark.yaml").write_text(yaml.safe_dump(_crd(
        "sparkoperator.k8s.io", "SparkApplication", "sparkapplications", "v1beta2", {"type": "object"})))
    discovery = StandInCustomObjectsApi([NARROW_SPARK])
    cluster = ClusterCRDs(StandInApiextensionsV1Api([NARROW_SPARK]), discovery, "stand-in cluster")
    sources = SchemaSources(tmp_path, cluster)
    checked = check_object(_spark_app(), sources=sources)
    assert checked.source == CLUSTER
    assert checked.detail == "CustomResourceDefinition sparkapplications.sparkoperator.k8s.io (stand-in cluster)"
    assert any("'Python' is not one of ['Scala']" in p.message for p in checked.problems)
    check_object(_spark_app(), sources=sources)
    assert discovery.calls == [("sparkoperator.k8s.io", "v1beta2")], "one read per kind per process"
    # The cluster does not serve the API: an error (applying would fail), not a fallback.
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {"selector": {}, "endpoints": []}}
    checked = check_object(monitor, sources=sources)
    assert checked.source == CLUSTER
    assert "does not serve monitoring.coreos.com/v1: is the CRD installed?" in checked.problems[0].message


def test_a_cluster_that_cannot_answer_falls_back_to_the_next_source(caplog):
    pytest.importorskip("kubernetes")
    cluster = ClusterCRDs(StandInApiextensionsV1Api([NARROW_SPARK], status=403),
                          StandInCustomObjectsApi([NARROW_SPARK]), "stand-in cluster")
    sources = SchemaSources(None, cluster)
    checked = check_object(_spark_app(), sources=sources)
    assert checked.source == PROJECT and checked.problems == []
    assert "403 Forbidden" in caplog.text and "get` on customresourcedefinitions" in caplog.text


def test_no_cluster_config_means_no_cluster_source(tmp_path, monkeypatch):
    pytest.importorskip("kubernetes")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cluster_crds() is None  # the function itself (tests/conftest.py stubs the module's name)
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    found = cluster_crds()
    assert isinstance(found, ClusterCRDs) and found.where == "kubeconfig"


def test_mode_local_never_asks_the_cluster(monkeypatch):
    from llmops.settings import load_settings

    asked = []
    monkeypatch.setattr("llmops.k8s.validate.cluster_crds", lambda: asked.append(1))
    assert schema_sources(load_settings(environ={}, mode="local", crd_dir=None)).cluster is None
    assert asked == []


def test_validate_dir_reports_per_file(tmp_path):
    (tmp_path / "ok.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: 3}\n")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    result = validate_dir(tmp_path)
    assert result[str(tmp_path / "ok.yaml")] == []
    assert result[str(tmp_path / "bad.yaml")]
    assert "not valid YAML" in result[str(tmp_path / "broken.yaml")][0].message


def test_render_and_validate_summaries_name_the_source_of_each_object(tmp_path, capsys):
    from llmops.cli import main

    adapter_folder = tmp_path / "adapter"
    adapter_folder.mkdir()
    (adapter_folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "models" / "llama"), "r": 8, "peft_type": "LORA"})
    )
    (adapter_folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    out = tmp_path / "out"
    assert main(["render", "--model-uri", str(adapter_folder), "--config", str(REPO / "examples/gpu/deploy.yaml"),
                 "--out", str(out), "--set", f"source.mirrors={tmp_path}",
                 "--summary-json", str(tmp_path / "render.json")]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "render.json").read_text())
    assert summary["validated_by"]["ServiceMonitor/llmops-assistant"] == PROJECT
    assert summary["validated_by"]["ScaledObject/llmops-assistant"] == PROJECT
    assert summary["validated_by"]["Deployment/llmops-assistant"] == BUILTIN
    capsys.readouterr()
    assert main(["validate", summary["manifests_uri"], "--summary-json", str(tmp_path / "validate.json")]) == 0
    err = capsys.readouterr().err
    assert "(HTTPRoute/llmops-assistant: project)" in err
    by_file = json.loads((tmp_path / "validate.json").read_text())["validated_by"]
    assert by_file[str(Path(summary["manifests_uri"]) / "httproute.yaml")] == {"HTTPRoute/llmops-assistant": PROJECT}


def test_shared_helper_skips_naming_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTS_SHARED_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(pytest.skip.Exception, match=r"nothing-here/crds \(../shared/crds beside the checkout\)"):
        require_shared("crds")
    (tmp_path / "nothing-here" / "crds").mkdir(parents=True)
    assert require_shared("crds") == tmp_path / "nothing-here" / "crds"
