# Two commands on a fresh machine: `make run` (the app on the embedded model) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench

$(STAMP): requirements.txt requirements-embedded.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-embedded.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.headless true

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.bench_generation
	$(PY) -m bench.bench_cache
	$(PY) -m bench.bench_app
