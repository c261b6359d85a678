# syntax=docker/dockerfile:1.7
# Two images from one file, installed exactly as `make install` installs the checkout:
#   docker build --build-context crds=../shared/crds --target airflow -t ghcr.io/airflow-llmops/airflow:0.1.0 .
#   docker build --build-context crds=../shared/crds --target worker  -t ghcr.io/airflow-llmops/worker:0.1.0 .
# CRD schemas for `llmops validate` come from a named build context (BuildKit), the folder the checkout
# reads as ../shared/crds:   docker build --build-context crds=../shared/crds --target worker ...
# `airflow`: scheduler, API server, dag-processor, triggerer and workers (Airflow + providers + project).
# `worker`: step pods and Spark driver/executors (trainer stack, Spark, Java 17); no Airflow.
# The project lives at /opt/llmops in both, so SparkApplications run local:///opt/llmops/spark_jobs/....

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    LLMOPS_TEMPLATES_DIR=/opt/llmops/k8s_templates \
    LLMOPS_CRD_DIR=/opt/llmops/crds
RUN useradd --uid 50000 --create-home --home-dir /home/llmops llmops \
    && python -m pip install --upgrade pip
WORKDIR /opt/llmops
# Dependency layer first (changes rarely): pinned versions, same file as `make install`.
COPY constraints.txt pyproject.toml setup.py README.md ./
COPY --from=crds . /opt/llmops/crds/

# ---------------------------------------------------------------------------------------------------
FROM base AS airflow
COPY llmops/ llmops/
COPY operators/ operators/
COPY plugins/ plugins/
COPY k8s_templates/ k8s_templates/
RUN pip install -c constraints.txt -e ".[airflow]"
COPY dags/ /opt/airflow/dags/
ENV AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__LLMOPS__MODE=kubernetes
USER 50000
ENTRYPOINT ["airflow"]
CMD ["api-server"]

# ---------------------------------------------------------------------------------------------------
FROM base AS worker
# Spark needs Java 17; procps gives Spark's scripts `ps`.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
# torch first, pinned, as `make install` does. TORCH_INDEX picks the CUDA build for GPU nodes.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple "torch==2.13.0"
COPY llmops/ llmops/
COPY operators/ operators/
COPY plugins/ plugins/
COPY k8s_templates/ k8s_templates/
COPY spark_jobs/ spark_jobs/
COPY examples/ examples/
RUN pip install -c constraints.txt -e ".[spark,train]"
ENV PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    HF_HOME=/models/hf \
    TOKENIZERS_PARALLELISM=false
USER 50000
ENTRYPOINT ["llmops"]
CMD ["--help"]
