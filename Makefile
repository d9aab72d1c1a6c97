# Two commands on a fresh machine: `make run` (the app on the embedded model) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run dev test test-quick lint bench mutation

$(STAMP): requirements.txt requirements-embedded.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-embedded.txt
	touch $(STAMP)

# No file watcher: an installed app needs none, and on a big tree it floods the log with "Inotify queue overflowed".
run: $(STAMP)
	$(PY) -m ui.serve app.py --server.headless true --server.fileWatcherType none

# For development: reloads when a source file changes, and shows Streamlit's developer toolbar.
dev: $(STAMP)
	$(PY) -m ui.serve app.py --server.headless true --server.fileWatcherType auto --client.toolbarMode developer

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# A worker per core (pytest-xdist), each taking whole test files (so a file's server or tiny build is made once), slow files
# first (tests/conftest.py). Torch's idle threads wait passively: spinning, the two workers' threads doubled the CPU time.
TEST_RUN := OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test: lint
	$(TEST_RUN)

# For development: skips the tests marked slow (build, evaluate, the real model, the browser); CI runs `make test`.
test-quick: lint
	$(TEST_RUN) -m "not slow"

bench: $(STAMP)
	$(PY) -m bench.bench_generation
	$(PY) -m bench.bench_cache
	$(PY) -m bench.bench_app
	$(PY) -m bench.bench_shared_work
	$(PY) -m bench.bench_batches

# Mutation testing of the core modules (pyproject.toml [tool.mutmut]); outside `make test`: about an hour on 2 cores.
# Results stay in mutants/, so a rerun tests only the mutants of functions that changed.
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m mutmut run --max-children 2
	$(PY) -m scripts.mutation_score
