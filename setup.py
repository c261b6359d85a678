"""Package layout that pyproject.toml cannot express alone.

The checkout keeps the house layout (`operators/`, `plugins/` at top level), but installed they get
names that cannot collide with other distributions: `llmops_operators`, `llmops_airflow_plugin`.
"""

from setuptools import find_packages, setup

core = find_packages(include=["llmops", "llmops.*"])
operators = ["llmops_operators" + p[len("operators"):] for p in find_packages(include=["operators", "operators.*"])]
plugin = ["llmops_airflow_plugin" + p[len("plugins"):] for p in find_packages(include=["plugins", "plugins.*"])]

setup(packages=core + operators + plugin)
