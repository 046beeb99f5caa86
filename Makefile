# Two entry points a newcomer needs: `make demo` and `make test`. Both build the
# virtual environment from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench baseline docs calibrate-demo demo-history clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on the bundled demo: a scenario run, then a workload model calibrated from the
# bundled Prometheus history (no cluster, no Prometheus needed).
demo: $(STAMP)
	$(BIN)/capsim run scenarios/flash-crowd.yaml
	$(BIN)/capsim calibrate --from-file scenarios/data/history/demo.om.gz --service front --namespace dev \
		-o reports/demo-models/front.yaml

calibrate-demo: $(STAMP)
	$(BIN)/capsim calibrate --from-file scenarios/data/history/demo.om.gz --service front --namespace dev \
		-o models/front.yaml
	$(BIN)/capsim calibrate --from-file scenarios/data/history/demo.om.gz --service flask-app-2 --namespace dev \
		-o models/flask-app-2.yaml
	$(BIN)/capsim backtest scenarios/diurnal-day.yaml --from-file scenarios/data/history/demo.om.gz \
		--start 2024-03-10T09:00:00Z

demo-history: $(STAMP)
	$(BIN)/python scripts/generate_demo_history.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check sim tests benchmarks scripts
	$(BIN)/ruff format --check sim tests benchmarks scripts
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
