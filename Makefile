# Serve INSTRUCTOR embeddings with TorchServe. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= demo
NAME ?= instructor
INSTRUCTION_MODE ?=
REVISION ?=
FORMAT ?= default
PRECISION ?= fp32
ENGINE ?= torch
WORKERS ?= 1
TOKEN_EXPIRATION_MIN ?= 60
MAX_LENGTH ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
FIDELITY_ARGS ?=
DATA ?=
TASK ?=
COMPARE ?=
DOWNLOAD ?=
EVAL_ARGS ?=
CORPUS ?=
OUT ?= vectors
EMBED_ARGS ?=
IMAGE ?= instructor-serve
IMAGE_ARGS ?=

SERVE_ARGS := --model $(MODEL) --name $(NAME) --format $(FORMAT) --precision $(PRECISION) --engine $(ENGINE) --workers $(WORKERS) \
	$(if $(INSTRUCTION_MODE),--instruction-mode $(INSTRUCTION_MODE),) $(if $(REVISION),--revision $(REVISION),) \
	$(if $(MAX_LENGTH),--max-length $(MAX_LENGTH),)

.PHONY: help venv serve stop archive embed image test test-fast test-container soak lint golden bench fidelity eval clean

help:
	@echo "make serve [MODEL=demo|tiny|/path|owner/name] [REVISION=commit] [NAME=instructor] [INSTRUCTION_MODE=exclude|include|ignore] [FORMAT=default|no-archive|tgz] [PRECISION=fp32|bf16|int8|auto|fastest] [ENGINE=torch|openvino] [WORKERS=1] [MAX_LENGTH=the model's own]"
	@echo "make stop      stop the server make serve started"
	@echo "               on a running server: NAME is updated to the new model without a failed request"
	@echo "               [TOKEN_EXPIRATION_MIN=60: minutes a key lives; set when TorchServe starts]"
	@echo "make embed CORPUS=docs.jsonl [OUT=vectors] [EMBED_ARGS=--instruction ...]"
	@echo "               embed a corpus file (JSONL, CSV, Parquet, text) into Parquet shards; re-run to resume"
	@echo "make archive   build model_store/NAME.mar only"
	@echo "make image     build the Docker image [IMAGE=instructor-serve] [IMAGE_ARGS=--base local ...] (docker, else podman)"
	@echo "make test      lint + the whole test suite (unit, parity, golden, real TorchServe, the image); slowest 30 printed"
	@echo "make test-fast lint + what runs without a TorchServe or an image;  make test-container: the image tier alone"
	@echo "make soak      the reliability tests with 10x the requests, then 30 min of make embed with memory sampled"
	@echo "make bench     limit, baseline and our server side by side -> docs/benchmarks/ (~50 min on 2 cores) [BENCH_ARGS=...]"
	@echo "make fidelity  every mode and int8 scheme: cosines, ranking, raw rates -> docs/benchmarks/fidelity-<cpu>.md (fetches MPNet from PyPI) [FIDELITY_ARGS=...]"
	@echo "make eval DATA=<BEIR folder> [NAME=instructor] [TASK=scifact] [COMPARE=a,b] [DOWNLOAD=scifact] [EVAL_ARGS=...]"
	@echo "               nDCG@10, Recall@100, MRR@10 of the served model(s) -> eval-results/"
	@echo "make golden    regenerate tests/golden/ with the legacy INSTRUCTOR stack (~6 GB venv)"

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

serve: venv
	$(PY) scripts/serve.py $(SERVE_ARGS) --token-expiration-min $(TOKEN_EXPIRATION_MIN)

stop: venv
	$(PY) scripts/stop.py

embed: venv
	@test -n "$(CORPUS)" || { echo "usage: make embed CORPUS=<file> [OUT=vectors] [NAME=instructor] [EMBED_ARGS=...]"; exit 2; }
	$(PY) -m toolkit embed $(CORPUS) $(OUT) --name $(NAME) $(EMBED_ARGS)

archive: venv
	$(PY) scripts/build_archive.py $(SERVE_ARGS)

# Standard library only: runs without the venv. Docker when an engine answers, else podman.
image:
	$(PYTHON) scripts/build_image.py --tag $(IMAGE) $(IMAGE_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

test: lint
	$(VENV)/bin/pytest --durations=30 $(PYTEST_ARGS)

# Everything that runs without a TorchServe process or an image (unit, parity, golden, in-process handler).
test-fast: lint
	$(VENV)/bin/pytest -m "not integration and not container" --durations=15 $(PYTEST_ARGS)

# The container tier alone: the image built and run by podman (or docker).
test-container: venv
	$(VENV)/bin/pytest -m container --durations=15 $(PYTEST_ARGS)

# Ten times the live fuzz, load and fault-injection requests of make test; then 30 minutes of the embed
# job with mixed traffic, the worker's and frontend's memory sampled (docs/benchmarks/soak-*.json).
soak: venv
	RELIABILITY_SCALE=10 $(VENV)/bin/pytest tests/test_reliability.py $(PYTEST_ARGS)
	$(PY) -m toolkit soak-embed

# Speed, latency, cold start and memory, written to docs/benchmarks/ (never part of make test).
bench: venv
	$(PY) scripts/bench.py $(BENCH_ARGS)

# Every mode's fidelity and raw rate on real MiniLM, real MPNet (from PyPI) and the T5 shapes (never in make test).
fidelity: venv
	$(PY) scripts/fidelity_report.py $(FIDELITY_ARGS)

# Retrieval quality of the running server's model(s) on BEIR-format data (make serve first).
eval: venv
	$(PY) scripts/evaluate.py $(DATA) --name $(NAME) $(if $(TASK),--task $(TASK),) \
		$(if $(COMPARE),--compare $(COMPARE),) $(if $(DOWNLOAD),--download $(DOWNLOAD),) $(EVAL_ARGS)

.venv-legacy/.installed: requirements-legacy.txt
	$(PYTHON) -m venv .venv-legacy
	.venv-legacy/bin/python -m pip install --quiet -r requirements-legacy.txt
	touch $@

golden: venv .venv-legacy/.installed
	$(PY) scripts/make_tiny_model.py models/tiny
	.venv-legacy/bin/python scripts/make_golden_vectors.py models/tiny tests/golden/tiny_instructor.json

clean:
	rm -rf model_store/*.mar model_store/$(NAME) .run logs
