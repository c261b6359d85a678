# syntax=docker/dockerfile:1.7
# Two images from one file, both installing the project's wheel (no checkout inside an image), and
# everything they need from this repository alone:
#   docker build --target airflow -t ghcr.io/airflow-llmops/airflow:0.1.0 .
#   docker build --target worker  -t ghcr.io/airflow-llmops/worker:0.1.0 .
# `airflow`: scheduler, API server, dag-processor, triggerer and workers, built on the official
#   apache/airflow image of the supported version, so its entrypoint runs the official Helm chart's
#   default args (`command: ~`, `args: ["bash", "-c", "exec airflow scheduler"]`).
# `worker`: step pods and Spark driver/executors (trainer stack, Spark, Java 17); no Airflow.
# In each image the dependency layer (changes when pyproject.toml or constraints.txt change) comes before
# the code layer (the wheel, rebuilt on every code change).

ARG PYTHON_VERSION=3.11
# The Airflow version of the `airflow` image (the one constraints.txt pins and the tests run).
ARG AIRFLOW_VERSION=3.3.2

# ---------------------------------------------------------------------------------------------------
# The requirements of each image, read from pyproject.toml alone: the dependency layers below are rebuilt
# only when the declared dependencies change, not on every code change.
FROM python:${PYTHON_VERSION}-slim-bookworm AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python - <<'EOF'
import re, tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]

def expand(name):
    out = []
    for req in extras[name]:
        self_ref = re.fullmatch(r"airflow-llmops\[(.+)\]", req)
        out += [r for e in self_ref.group(1).split(",") for r in expand(e.strip())] if self_ref else [req]
    return out

out = Path("/requirements")
out.mkdir()
for image, names in {"airflow": ["airflow"], "worker": ["spark", "train"]}.items():
    reqs = dict.fromkeys(project["dependencies"] + [r for n in names for r in expand(n)])
    (out / f"{image}.txt").write_text("\n".join(reqs) + "\n")
EOF

# ---------------------------------------------------------------------------------------------------
# The project's wheel, built once; both images install it (`pip wheel --no-deps`, as the tests do).
FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY llmops/ llmops/
COPY operators/ operators/
COPY plugins/ plugins/
COPY k8s_templates/ k8s_templates/
COPY examples/ examples/
COPY spark_jobs/ spark_jobs/
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

# ---------------------------------------------------------------------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow
ARG AIRFLOW_VERSION
# Dependency layer, installed as the image's `airflow` user (the official image's way) under Airflow's
# own constraints for this version (the image ships them as ~/constraints.txt); naming
# apache-airflow==<version> keeps pip from moving Airflow.
COPY --from=requirements /requirements/airflow.txt /tmp/requirements-airflow.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements-airflow.txt \
        -c "${HOME}/constraints.txt"
# Code layer: the wheel (llmops, llmops_operators, the plugin, templates and example configs; not the
# development tools in llmops/dev, which setup.py leaves out).
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__LLMOPS__MODE=kubernetes
# ENTRYPOINT and CMD stay the official image's (dumb-init + /entrypoint): `docker run IMAGE scheduler`
# and the Helm chart's `bash -c "exec airflow scheduler"` both work.

# ---------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS worker
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1
# Spark needs Java 17; procps gives Spark's scripts `ps`.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --create-home --home-dir /home/llmops llmops \
    && python -m pip install --upgrade pip
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
WORKDIR /opt/llmops
COPY constraints.txt /opt/llmops/constraints.txt
# torch first, at the version constraints.txt pins; TORCH_INDEX picks its CUDA build for GPU nodes.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
        -c constraints.txt torch
# Dependency layer: exactly the versions `make install` installs (constraints.txt).
COPY --from=requirements /requirements/worker.txt /tmp/requirements-worker.txt
RUN pip install -c constraints.txt -r /tmp/requirements-worker.txt
# Code layer: the wheel. SparkApplications run local:///opt/llmops/spark_jobs/preprocess.py
# (k8s_templates/spark/values.yaml): a link to the entrypoint the wheel installed.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/*.whl \
    && mkdir -p /opt/llmops/spark_jobs \
    && ln -s "$(python -c 'from llmops.resources import spark_entrypoint; print(spark_entrypoint())')" \
        /opt/llmops/spark_jobs/preprocess.py \
    && test -f /opt/llmops/spark_jobs/preprocess.py
ENV PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    HF_HOME=/models/hf \
    TOKENIZERS_PARALLELISM=false
USER 50000
ENTRYPOINT ["llmops"]
CMD ["--help"]
