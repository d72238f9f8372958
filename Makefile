# Flywheel: the two commands are `make demo` and `make test`; both work from a clean clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(PY) -m uv

.PHONY: install demo test bench lint clean constraints

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# uv (bootstrapped into the venv with pip) installs the project in a fraction of pip's time; pip does
# it where uv cannot be had. uv resolves with deploy/constraints.txt (the image's pins) as preferences,
# not constraints: the test venv gets the image's versions wherever the dev tools allow them (plain
# resolution, pip's as uv's, may settle a conflict another way, e.g. an older kfp). Bytecode is compiled
# at install as pip does: no test process pays for it (every one would, with PYTHONDONTWRITEBYTECODE).
# uv reads no pip.conf: a machine's find-links, extra indexes and constraints (a torch cap) are pip's only.
$(STAMP): $(PY) pyproject.toml deploy/constraints.txt
	$(UV) --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv || echo "uv is unavailable: pip installs"
	if $(UV) --version >/dev/null 2>&1; then \
		cp deploy/constraints.txt $(VENV)/requirements.txt && \
		$(UV) pip compile --quiet --python $(PY) --extra dev pyproject.toml -o $(VENV)/requirements.txt && \
		$(UV) pip install --quiet --python $(PY) --compile-bytecode -c $(VENV)/requirements.txt -e ".[dev]"; \
	else \
		$(PY) -m pip install --quiet -e ".[dev]"; \
	fi
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
