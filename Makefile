# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   — the main job on the bundled default site
#   make test   — the whole test suite
# Both create .venv and install the locked dependencies (constraints.txt) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
VENDOR := lastwatt/dashboard/vendor/.stamp

.PHONY: demo test test-fast lint typecheck check benchmark lock clean

# The dashboard's front-end libraries come from npm (pinned by frontend/package-lock.json)
# and are copied into the package; the dashboard never loads anything from a CDN.
$(VENDOR): frontend/package.json frontend/package-lock.json scripts/vendor_frontend.py
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(PYTHON) scripts/vendor_frontend.py
	touch $(VENDOR)

$(STAMP): pyproject.toml constraints.txt $(VENDOR)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	# compat mode: a plain path entry; the default finder lets a namespace shadow our packages
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lastwatt demo --out-dir out

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/make_default_site.py --check
	$(BIN)/python scripts/make_week_weather.py --check

typecheck: $(STAMP)
	$(BIN)/mypy microgrid forecasts dispatch controllers settlement scenarios lastwatt

check: lint typecheck test

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_forecast.py

# Re-resolve the lock from pyproject's ranges (run by hand, commit the result).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache frontend/node_modules lastwatt/dashboard/vendor
