# Two entry points a newcomer needs: `make demo` and `make test`. Both build the
# virtual environment from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench baseline docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/capsim run scenarios/flash-crowd.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check sim tests benchmarks
	$(BIN)/ruff format --check sim tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_karpenter.py

# After a change to the model or the demo scenarios: re-record what `capsim check` compares against,
# and regenerate the scenario reference.
baseline: $(STAMP)
	$(BIN)/capsim check scenarios/flash-crowd.yaml scenarios/diurnal-day.yaml scenarios/replay-elb.yaml --update-baseline

docs: $(STAMP)
	$(BIN)/capsim schema --markdown > docs/scenario-reference.md

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache .mypy_cache .ruff_cache
