# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make run    create .venv, install churnctl, run the nightly job on the bundled sample
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE_AS_OF ?= 2026-06-30
STAMP := $(VENV)/.installed

.PHONY: run test venv sample bench clean simulate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/churnctl run --config configs/churnctl.yaml --as-of $(SAMPLE_AS_OF)

test: $(STAMP)
	$(BIN)/python -m pytest -q

sample: $(STAMP)
	$(BIN)/churnctl sample --out data/sample --customers 2500 --seed 7 --end-date $(SAMPLE_AS_OF)

# Five nightly runs over a 3,000-customer sample with a planted campaign effect, then `measure`.
simulate: $(STAMP)
	$(BIN)/python scripts/simulate.py --out sim --customers 3000 --nights 5

# Benchmark (bench/benchmark.py): generates 1M orders once into BENCH_DATA (outside the repo).
BENCH_DATA ?= $${TMPDIR:-/tmp}/churnctl-bench
bench: $(STAMP)
	$(BIN)/python bench/benchmark.py --data $(BENCH_DATA) --sizes 1m

clean:
	rm -rf out models state sim .pytest_cache
