"""Packaging: the wheel runs with no checkout around it, the extras declare ranges whose exact versions
live in constraints.txt, and the Dockerfile builds its images from this repository alone (docker cannot
run here: its properties are checked statically)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "airflow-llmops"]


# --- version ranges ---------------------------------------------------------------------------------


def test_extras_declare_ranges_and_constraints_pin_a_version_inside_each():
    pins = _constraints()
    for req in _requirements():
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: exact pins go in constraints.txt"
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned, prereleases=True), f"constraints.txt pins {req.name}=={pinned}: outside {req}"


def test_torch_is_installed_at_the_pinned_version_first():
    # `make install` installs torch before the extras; the pin keeps the range from choosing another build.
    makefile = (REPO / "Makefile").read_text()
    (torch,) = re.findall(r"^TORCH := torch==(\S+)$", makefile, flags=re.M)
    assert _constraints()["torch"] == torch


def test_airflow_extra_supports_the_3x_line():
    (airflow,) = [r for r in _requirements() if r.name == "apache-airflow"]
    assert airflow.specifier.contains(_constraints()["apache-airflow"])
    assert not airflow.specifier.contains("4.0.0") and not airflow.specifier.contains("2.11.0")


# --- Dockerfile -------------------------------------------------------------------------------------


def _dockerfile() -> tuple[dict[str, str], dict[str, list[str]], str]:
    """Global ARG defaults, each stage's instructions (continuation lines joined), and the raw text."""
    text = (REPO / "Dockerfile").read_text()
    text_no_heredoc = re.sub(r"<<'EOF'\n.*?\nEOF\n", "<<'EOF'\n", text, flags=re.S)
    joined = re.sub(r"\\\n\s*", " ", text_no_heredoc)
    args: dict[str, str] = {}
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            match = re.fullmatch(r"FROM (\S+) AS (\S+)", line)
            assert match, f"every stage is named: {line}"
            current = stages.setdefault(match.group(2), [])
            current.append(line)
        elif current is None:
            match = re.fullmatch(r"ARG (\w+)=(\S+)", line)
            assert match, f"before the first stage only ARGs: {line}"
            args[match.group(1)] = match.group(2)
        else:
            current.append(line)
    return args, stages, text


def _index(stage: list[str], pattern: str) -> int:
    hits = [i for i, line in enumerate(stage) if re.search(pattern, line)]
    assert hits, f"no instruction matches {pattern!r}"
    return hits[0]


def test_dockerfile_needs_nothing_outside_the_repository():
    _, stages, text = _dockerfile()
    assert "--build-context" not in text
    for name, stage in stages.items():
        for line in stage:
            if line.startswith(("COPY", "ADD")):
                parts = [p for p in line.split()[1:] if not p.startswith("--")]
                from_stage = re.search(r"--from=(\S+)", line)
                if from_stage:
                    assert from_stage.group(1) in stages, f"{name}: {line} copies from outside the build"
                    continue
                for source in parts[:-1]:
                    assert ".." not in Path(source).parts, f"{name}: {line}"
                    assert (REPO / source).exists(), f"{name}: {line}: {source} is not in the repository"


def test_dockerfile_stages_and_the_wheel():
    _, stages, _ = _dockerfile()
    assert set(stages) == {"requirements", "wheel", "airflow", "worker"}
    wheel = stages["wheel"]
    assert any(re.search(r"pip wheel .*--no-deps .*-w /wheels \.$", line) for line in wheel)
    # The wheel's sources: every folder pyproject.toml maps to a package.
    copied = {line.split()[1].rstrip("/") for line in wheel if line.startswith("COPY ")}
    assert set(PACKAGE_DIRS.values()) <= copied
    for image in ("airflow", "worker"):
        stage = stages[image]
        assert not any(re.search(r"pip install .*(-e|--editable) ", line) for line in stage), f"{image}: editable install"
        deps = _index(stage, r"pip install .*-r /tmp/requirements-")
        code = _index(stage, r"COPY --from=wheel ")
        install = _index(stage, r"pip install .*--no-deps /tmp/wheels/\*\.whl")
        assert deps < code < install, f"{image}: the dependency layer comes before the code layer"
        assert not any(re.match(r"COPY (llmops|operators|plugins|k8s_templates|examples|spark_jobs)/", line)
                       for line in stage), f"{image}: code comes only from the wheel"


def test_airflow_image_is_the_official_image_of_the_supported_version():
    args, stages, _ = _dockerfile()
    airflow = stages["airflow"]
    assert airflow[0] == "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow"
    assert args["AIRFLOW_VERSION"] == _constraints()["apache-airflow"]
    assert args["PYTHON_VERSION"] == "3.11"
    # Airflow's own constraints for that version, and Airflow itself named so pip never moves it.
    deps = airflow[_index(airflow, r"pip install .*-r /tmp/requirements-airflow.txt")]
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in deps and '-c "${HOME}/constraints.txt"' in deps
    # The official entrypoint stays: it runs the Helm chart's `bash -c "exec airflow scheduler"` args.
    assert not any(line.startswith(("ENTRYPOINT", "CMD")) for line in airflow)


def test_worker_image_pins_like_make_install_and_links_the_spark_entrypoint():
    _, stages, _ = _dockerfile()
    worker = stages["worker"]
    assert any(re.search(r"pip install .*-c constraints.txt torch$", line) for line in worker)
    assert any(re.search(r"pip install -c constraints.txt -r /tmp/requirements-worker.txt", line) for line in worker)
    assert any("ln -s" in line and "/opt/llmops/spark_jobs/preprocess.py" in line for line in worker)


def test_requirements_stage_splits_the_extras_per_image(tmp_path, monkeypatch):
    # Run the Dockerfile's own script on this pyproject.toml, writing into a temporary folder.
    text = (REPO / "Dockerfile").read_text()
    (script,) = re.findall(r"RUN python - <<'EOF'\n(.*?)\nEOF\n", text, flags=re.S)
    out = tmp_path / "requirements"
    script = script.replace('Path("/requirements")', f"Path({str(out)!r})")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "Dockerfile:requirements", "exec"), {})
    names = {
        image: {canonicalize_name(Requirement(r).name) for r in (out / f"{image}.txt").read_text().split("\n") if r}
        for image in ("airflow", "worker")
    }
    assert {"apache-airflow", "apache-airflow-providers-cncf-kubernetes", "pydantic"} <= names["airflow"]
    assert not {"torch", "pyspark", "mlflow"} & names["airflow"]
    assert {"torch", "pyspark", "mlflow", "lm-eval", "pydantic"} <= names["worker"]
    assert not {n for n in names["worker"] if n.startswith("apache-airflow")}


# --- the wheel, with no checkout around it ----------------------------------------------------------


def test_every_folder_of_python_modules_is_a_package():
    # setup.py lists packages with find_packages: a folder without __init__.py is left out of the wheel,
    # while the editable install still imports it (so nothing else in `make test` would notice).
    for folder in PACKAGE_DIRS.values():
        for directory in [REPO / folder, *(REPO / folder).rglob("*")]:
            if directory.is_dir() and "__pycache__" not in directory.parts and any(directory.glob("*.py")):
                assert (directory / "__init__.py").is_file(), f"{directory.relative_to(REPO)}/ has no __init__.py"


IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".airflow", ".llmops", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", "tests", "spark-warehouse", "metastore_db",
)


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """`pip wheel --no-deps -w DIR .` of a copy of the checkout, unpacked into a folder (what an install puts
    in site-packages). --no-build-isolation: the build uses this venv's setuptools, no index needed."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=IGNORED)
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = dist.glob("*.whl")
    site = root / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def _run_outside(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Python with the unpacked wheel first on sys.path, from a folder with no checkout in it. This
    venv's editable install of the checkout stays importable, behind PYTHONPATH: the first command of
    the test checks that every package really comes from the wheel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HOME=str(cwd / "home"))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _runtime_files(folder: Path) -> set[Path]:
    """Every file of a package folder but caches, dot-files (plugins/.airflowignore is for local mode's
    plugins folder) and Markdown notes."""
    return {
        p.relative_to(folder) for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".") and p.suffix not in (".pyc", ".md")
    }


# The development tools (demo, benchmarks, sample data, tiny base model): in a checkout, not in the wheel.
DEV_TOOLS = Path("dev")


@pytest.mark.slow
def test_the_wheel_ships_every_runtime_file_and_no_dev_tool(wheel_site):
    for package, folder in PACKAGE_DIRS.items():
        shipped = {p.relative_to(wheel_site / package) for p in (wheel_site / package).rglob("*") if p.is_file()}
        here = _runtime_files(REPO / folder)
        if package == "llmops":
            dev = {p for p in here if p.is_relative_to(DEV_TOOLS)}
            assert dev, "llmops/dev/ holds the development tools"
            here -= dev
            assert not {p for p in shipped if p.is_relative_to(DEV_TOOLS)}, "the wheel ships llmops/dev/"
        assert here <= shipped, f"{folder}/ files missing from the wheel: {sorted(map(str, here - shipped))}"


@pytest.mark.slow
def test_the_wheel_renders_and_validates_with_no_checkout(wheel_site, tmp_path):
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    packages = ["llmops", *sorted(p for p in PACKAGE_DIRS if p != "llmops")]
    code = f"import importlib, json; print(json.dumps({{p: importlib.import_module(p).__file__ for p in {packages!r}}}))"
    probe = _run_outside(wheel_site, work, "-c", code)
    assert probe.returncode == 0, probe.stderr
    for package, file in json.loads(probe.stdout).items():
        assert Path(file).is_relative_to(wheel_site), f"{package} imported from {file}, not from the wheel"

    settings = _run_outside(wheel_site, work, "-m", "llmops", "settings")
    assert settings.returncode == 0, settings.stderr
    assert json.loads(settings.stdout)["derived"]["manifests"] == str(work / "home" / ".llmops" / "manifests")

    # An adapter folder as the registry stores it (tests/llmops/deploy/conftest.py's adapter_folder).
    adapter = tmp_path / "models" / "artifacts" / "llmops-assistant" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "models" / "models" / "llama"), "r": 16})
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    # Both packaged deploy configs, by the names the settings use (no such file in the working directory).
    for config in ("examples/local/deploy.yaml", "examples/gpu/deploy.yaml"):
        out = tmp_path / config.split("/")[1]
        render = _run_outside(wheel_site, work, "-m", "llmops", "render", "--model-uri", str(adapter),
                              "--config", config, "--out", str(out), "--set", f"source.mirrors={tmp_path / 'models'}")
        assert render.returncode == 0, render.stderr
        summary = json.loads(render.stdout)
        assert "deployment.yaml" in summary["files"] and "ServiceMonitor/llmops-assistant" in summary["validated_by"]
        validate = _run_outside(wheel_site, work, "-m", "llmops", "validate", str(out))
        assert validate.returncode == 0, validate.stderr
        assert json.loads(validate.stdout)["invalid"] == {}

    policy = _run_outside(wheel_site, work, "-c", "from llmops.evaluation.gate import load_policy; "
                          "print(len(load_policy('examples/local/gate.yaml').metrics))")
    assert policy.returncode == 0 and int(policy.stdout) > 0, policy.stderr


@pytest.mark.slow
def test_the_wheel_imports_every_runtime_module_and_dev_commands_say_where_they_are(wheel_site, tmp_path):
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts[:-1] if p.name == "__init__.py"
                 else p.relative_to(REPO).with_suffix("").parts)
        for p in (REPO / "llmops").rglob("*.py")
        if not p.relative_to(REPO / "llmops").is_relative_to(DEV_TOOLS) and p.name != "__main__.py"  # runs the CLI
    )
    code = ("import importlib, json; "
            f"print(json.dumps({{m: importlib.import_module(m).__file__ for m in {modules!r}}}))")
    probe = _run_outside(wheel_site, work, "-c", code)
    assert probe.returncode == 0, probe.stderr
    for module, file in json.loads(probe.stdout).items():
        assert Path(file).is_relative_to(wheel_site), f"{module} imported from {file}, not from the wheel"

    # This venv's editable finder comes after the path finder and would still find `llmops.dev` in the
    # checkout (it maps `llmops.*` to the checkout's folder); an image has no such finder, so drop it.
    no_checkout = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in f.__module__]; "
    dev = _run_outside(wheel_site, work, "-c", no_checkout + "import llmops.dev")
    assert dev.returncode != 0 and "No module named 'llmops.dev'" in dev.stderr, dev.stderr
    for argv in (["sample-data", "--out", str(tmp_path / "sample")], ["bench", "parse"]):
        run = _run_outside(wheel_site, work, "-c", no_checkout + f"from llmops.cli import main; sys.exit(main({argv!r}))")
        assert run.returncode == 2, run.stderr
        assert f"llmops {argv[0]}: a development tool, available in a checkout (pip install -e .)" in run.stderr
    assert not (tmp_path / "sample").exists()
