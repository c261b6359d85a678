"""The files the project ships beside its code, found the same way in a checkout, an editable install,
a wheel and an image: one rule, here.

The checkout keeps them in top-level folders; installed, each folder is a package of its own
(`setup.py` maps them, as it maps `operators/` to `llmops_operators`), read with `importlib.resources`:

    k8s_templates/  -> llmops_k8s_templates   Jinja2 templates and their values files
    examples/       -> llmops_examples        the configs the settings default to (gate policy, deploy)
    spark_jobs/     -> llmops_spark_jobs      the Spark entrypoint of the preprocessing job

A file named by a setting or a flag (`examples/local/gate.yaml`) is the user's first: a URI, an absolute
path or a path that exists from the working directory is taken as given. Only a relative path that does
not exist there, and starts with one of the folders above, is the packaged copy: so the defaults work in
any working directory and in a pod, and a user's own `examples/...` file wins over the packaged one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from llmops.exceptions import ConfigError

PACKAGES = {
    "k8s_templates": "llmops_k8s_templates",
    "examples": "llmops_examples",
    "spark_jobs": "llmops_spark_jobs",
}
"""Top-level folder of the checkout -> the package it is installed as."""

TEMPLATES_ENV = "LLMOPS_TEMPLATES_DIR"
"""Environment variable naming a folder of templates that replaces the packaged ones."""


def packaged(relative: str) -> Path:
    """The installed copy of a project file or folder, named by its path in the checkout
    (`examples/local/gate.yaml`, `k8s_templates`)."""
    top, _, rest = relative.strip("/").partition("/")
    package = PACKAGES.get(top)
    if package is None:
        raise ConfigError(
            f"{relative!r} is not a packaged project file: it must start with one of {', '.join(sorted(PACKAGES))}/"
        )
    return _as_path(resources.files(package).joinpath(*[p for p in rest.split("/") if p]), package)


def lm_eval_tasks_dir() -> Path:
    """Folder of the project's lm-eval task YAML files (lm-eval's `include_path` takes a folder)."""
    return _as_path(resources.files("llmops.evaluation").joinpath("tasks"), "llmops.evaluation")


def _as_path(resource, package: str) -> Path:
    # Jinja2's FileSystemLoader, lm-eval's include_path and spark-submit need real files: a package
    # imported from a zip archive has none (installing the wheel unpacks it; a zipapp does not).
    if not isinstance(resource, Path):
        raise ConfigError(
            f"package {package} is not installed as files on disk ({resource}): install the wheel with pip "
            "instead of importing it from an archive"
        )
    return resource


def resolve(uri: str) -> str:
    """The user's file if there is one, else the packaged file of that name, else `uri` unchanged (the
    caller reports it as missing, naming what the user gave)."""
    from llmops import storage

    if not uri or storage.scheme(uri) or Path(uri).is_absolute() or Path(uri).exists():
        return uri
    top = Path(uri).parts[0]
    if top not in PACKAGES:
        return uri
    candidate = packaged(Path(uri).as_posix())
    return str(candidate) if candidate.exists() else uri


def templates_dir() -> Path:
    """`LLMOPS_TEMPLATES_DIR` when set (a folder of your own templates), else the packaged templates."""
    from llmops.settings import process_settings

    env = process_settings().templates_dir
    if env:
        if not Path(env).is_dir():
            raise ConfigError(f"{TEMPLATES_ENV}={env}: not a folder; unset it to use the packaged templates")
        return Path(env)
    return packaged("k8s_templates")


def spark_entrypoint() -> Path:
    """The file `spark-submit` runs for the preprocessing job (`spark_jobs/preprocess.py`)."""
    return packaged("spark_jobs/preprocess.py")
