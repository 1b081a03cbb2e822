# The README's two commands: `make run` (install, then chat with the bot on embedded defaults)
# and `make test` (install, then lint, type-check and run the test suite). .ci/run calls `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run serve test lint typecheck pytest install bench eval teams-package clean

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

# The Redis tests need a Redis on 127.0.0.1:6379: .ci/with-redis uses the one there, else starts one.
pytest: install
	.ci/with-redis $(BIN)/python -m pytest -q

# Benchmarks (minutes, not a test): figures for the README and issue notes. Run on a quiet machine.
bench: install
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/retrieval_latency.py
	$(BIN)/python bench/slack_ack.py
	$(BIN)/python bench/ingest_contention.py
	.ci/with-redis $(BIN)/python bench/answer_throughput.py
	$(BIN)/python bench/serve_memory.py

# Retrieval quality on both evaluation sets in ../shared/eval (hybrid and vector-only; each its own scratch KB).
EVAL := ../shared/eval
eval: install
	$(BIN)/threadwise eval $(EVAL)/covidqa/qa_sample100.jsonl --docs $(EVAL)/covidqa/docs --kb eval-covidqa
	$(BIN)/threadwise eval $(EVAL)/ntsb/qa.jsonl --docs $(EVAL)/ntsb/docs --kb eval-ntsb

# The Teams app package (dist/threadwise-teams.zip): make teams-package MICROSOFT_APP_ID=… BOT_DOMAIN=…
teams-package:
	$(PYTHON) deploy/teams/package.py --app-id "$(MICROSOFT_APP_ID)" --domain "$(BOT_DOMAIN)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
