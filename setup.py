"""Package layout that pyproject.toml cannot express alone.

The checkout keeps the house layout (`operators/`, `plugins/`, `k8s_templates/`, `examples/`, `spark_jobs/`
at top level), but installed they get names that cannot collide with other distributions:
`llmops_operators`, `llmops_airflow_plugin`, and the run-time files as package data of
`llmops_k8s_templates`, `llmops_examples`, `llmops_spark_jobs` (read by `llmops.resources`). The same
mapping serves `pip install -e` (setuptools' editable finder maps each name to its folder) and a wheel.
"""

from setuptools import find_packages, setup

# Installed name -> folder of the checkout (also `[tool.setuptools] package-dir` in pyproject.toml).
RENAMED = {
    "llmops_operators": "operators",
    "llmops_airflow_plugin": "plugins",
    "llmops_k8s_templates": "k8s_templates",
    "llmops_examples": "examples",
    "llmops_spark_jobs": "spark_jobs",
}

# The development tools (`llmops/dev`: demo, benchmarks, sample data, tiny base model) stay out of the
# wheel, so out of the images; an editable install maps the whole `llmops/` folder, so a checkout has them.
packages = find_packages(include=["llmops", "llmops.*"], exclude=["llmops.dev", "llmops.dev.*"])
for name, folder in RENAMED.items():
    packages += [name + p[len(folder):] for p in find_packages(include=[folder, f"{folder}.*"])]

setup(packages=packages)
