# The README's two commands: `make run` (install, then chat with the bot on embedded defaults)
# and `make test` (install, then lint, type-check and run the test suite). .ci/run calls `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run serve test lint typecheck pytest install bench eval clean

run: install
	$(BIN)/threadwise chat

serve: install
	$(BIN)/threadwise serve

test: install lint typecheck pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "threadwise needs Python 3.11"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: that version's CPU build is what the dependencies must not replace.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check bot rag tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

eval: install
	$(BIN)/threadwise eval ../shared/eval/covidqa/qa_sample100.jsonl --docs ../shared/eval/covidqa/docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
