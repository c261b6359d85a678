from llmops.k8s.validate import validate_dir, validate_object


def _pod(**container):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", **container}]},
    }


def test_builtin_valid_and_strict_unknown_field():
    assert validate_object(_pod()) == []
    problems = validate_object(_pod(bogus=1))
    assert problems and "bogus" in problems[0].message and problems[0].path == "spec.containers.0"


def test_custom_resource_checked_against_crd():
    app = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "s"},
        "spec": {"type": "Python", "mode": "cluster", "sparkVersion": "4.0.0",
                 "mainApplicationFile": "local:///job.py", "driver": {"cores": 1}, "executor": {"instances": 1}},
    }
    assert validate_object(app) == []
    app["spec"]["driver"]["coress"] = 1
    assert any("coress" in p.message for p in validate_object(app))
    app["spec"]["driver"].pop("coress")
    app["spec"]["type"] = "Rust"
    assert any("Rust" in p.message for p in validate_object(app))


def test_unknown_custom_resource_is_an_error_not_a_pass():
    problems = validate_object({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}})
    assert problems and "CRD is not in" in problems[0].message


def test_validate_dir_reports_per_file(tmp_path):
    (tmp_path / "ok.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: 3}\n")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    result = validate_dir(tmp_path)
    assert result[str(tmp_path / "ok.yaml")] == []
    assert result[str(tmp_path / "bad.yaml")]
    assert "not valid YAML" in result[str(tmp_path / "broken.yaml")][0].message
