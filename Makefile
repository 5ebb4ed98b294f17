# Everything a fresh machine needs: python3 and make. The virtualenv is made here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean bench

run: export LOG_FORMAT ?= text
run: $(STAMP)
	$(BIN)/mailroom serve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

# Speed and memory figures: see docs/benchmarks.md. Installs wrk with apt-get if missing.
bench: BENCH_BASELINE ?= a2ac3f6
bench: $(STAMP)
	$(BIN)/python -m bench.put_cost
	$(BIN)/python -m bench.run $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))
	$(BIN)/python -m bench.replay
