# One virtual environment per checkout; every target sets it up when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-slow check demo clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/activate
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

check: install
	$(BIN)/ruff check tct_hf tests examples benchmarks
	$(BIN)/ruff format --check tct_hf tests examples benchmarks

demo: install
	$(BIN)/accelerate launch --num_processes 1 --num_cpu_threads_per_process $$(nproc) examples/train_tct.py --overwrite_output_dir

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache outputs/tct-demo
