# Flywheel: the two commands are `make demo` and `make test`; both work from a clean clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint clean constraints

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flywheel demo

test: $(STAMP)
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_pit_join.py
	$(PY) benchmarks/bench_features_scale.py
	$(PY) benchmarks/bench_serving.py
	$(PY) benchmarks/bench_drift.py
	$(PY) benchmarks/bench_credit.py

constraints: $(STAMP)  # deploy/constraints.txt: the image's pinned versions, resolved from pyproject.toml
	$(PY) deploy/lock.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks deploy
	$(VENV)/bin/ruff format --check src tests benchmarks deploy

clean:
	rm -rf .flywheel
