# Set-up and entry points. The CPU torch wheel is pinned here (not in the
# package's requirements, which stay a range) so that a fresh machine never
# pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
OUT ?= gradmedic-demo

.PHONY: demo test lint format bench bench-peers clean install dev browser lab

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet -e ".[dev,all]" "$(TORCH_SPEC)"
	touch $@

install: $(BIN)/.installed

dev: $(BIN)/.dev-installed

demo: $(BIN)/.installed
	$(BIN)/gradmedic demo --out $(OUT) --overwrite

test: $(BIN)/.dev-installed browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest

# Headless Chromium for the report's browser test (Debian package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: could not install chromium; the browser test will fail with a clear message"; }

lint: $(BIN)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(BIN)/.dev-installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

lab: $(BIN)/.installed
	$(BIN)/gradmedic lab run all --quick --out gradmedic-lab

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/monitor_overhead.py

# issue 16's reference workloads beside their peers, the per-probe profile, diagnose's wall time
bench-peers: $(BIN)/.installed
	$(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/profile_step.py --label now
	$(BIN)/python benchmarks/diagnose_time.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
