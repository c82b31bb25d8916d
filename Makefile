# Streamlake: thin wrappers. `make demo` installs everything and materializes the whole graph;
# `make test` runs the suite. Both are safe to re-run.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HLS_JS := node_modules/hls.js/dist/hls.min.js
PROMTOOL := $(BIN)/promtool
APT_PACKAGES := ffmpeg espeak-ng tesseract-ocr default-jre-headless redis-server chromium chromium-driver nodejs npm
DATA_DIR := $(or $(STREAMLAKE_DATA_DIR),$(CURDIR)/data)
export DAGSTER_HOME := $(DATA_DIR)/dagster
PYTEST_ARGS ?= -m "not slow and not gpu and not cluster and not faults"

.PHONY: install system-deps demo materialize test test-slow test-cluster test-faults notebooks lint dev serve mlflow bench recsys-table faults-table clean lock

install: system-deps $(STAMP) $(HLS_JS) $(PROMTOOL)

# System packages from Debian (root or sudo); skipped when the tools are already there.
system-deps:
	@missing=""; for tool in ffmpeg ffprobe espeak-ng tesseract java redis-server chromium chromedriver node npm; do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# Python deps pinned by requirements.lock (a constraint file: pyproject names, the lock pins).
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null || { echo "$(PY) not found: install Python 3.11"; exit 1; }
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	# --no-deps: openai-whisper would pull triton (~1 GB, GPU only); recbole is read only for the
	# MovieLens-100K files it ships (its licence forbids redistributing them: never commit them)
	$(BIN)/pip install -q --no-deps -c requirements.lock openai-whisper recbole
	@touch $(STAMP)

# hls.js for the player page (serving/static), pinned by package-lock.json and served from
# node_modules: the page loads nothing from a CDN.
$(HLS_JS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# promtool checks and unit-tests ops/prometheus/alerts.yml. It comes from Debian's prometheus
# package, unpacked rather than installed: installing it would also set up a Prometheus server
# that starts at boot.
$(PROMTOOL): | $(STAMP)
	@rm -rf $(VENV)/prometheus-deb && mkdir -p $(VENV)/prometheus-deb
	@cd $(VENV)/prometheus-deb && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; } && dpkg-deb -x prometheus_*.deb root
	cp $(VENV)/prometheus-deb/root/usr/bin/promtool $@ && rm -rf $(VENV)/prometheus-deb

demo: install
	$(BIN)/streamlake demo

materialize: install
	$(BIN)/streamlake materialize

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-slow: install
	$(BIN)/pytest -m "slow and not gpu and not cluster"

# Real cluster engines on loopback: Spark Connect from pyspark's own sbin/ (needs Java), and
# Debian's redis-server as Feast's online store.
test-cluster: install
	$(BIN)/pytest -m cluster

# Reliability and security faults (hostile media, killed and racing lake writers, an event storm,
# attacks on the real API): a few minutes; writes bench/results/faults.json (make faults-table).
test-faults: install
	$(BIN)/pytest -m faults -rfE

# The notebooks in notebooks/, run top to bottom over the lake and MLflow store `make demo` built
# (STREAMLAKE_DATA_DIR picks another); outputs are not written back, git keeps them stripped.
notebooks: install
	$(BIN)/pytest --nbmake --nbmake-timeout=300 notebooks/

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

dev: install
	@mkdir -p $(DAGSTER_HOME)
	@[ -f $(DAGSTER_HOME)/dagster.yaml ] || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

serve: install
	$(BIN)/python -m serving.run

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri $(or $(MLFLOW_TRACKING_URI),sqlite:///$(DATA_DIR)/mlflow.db) --host 127.0.0.1 --port 5000

bench: install
	@for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

# The README's recommender results table, from the MLflow runs (fill them: python bench/bench_recsys.py).
recsys-table: install
	$(BIN)/python scripts/recsys_table.py

# The README's Reliability table, from bench/results/faults.json (fill it: make test-faults).
faults-table: install
	$(BIN)/python scripts/faults_table.py

# Re-pin after changing pyproject.toml: resolves in a scratch venv and writes requirements.lock.
lock:
	rm -rf /tmp/streamlake-lock && $(PY) -m venv /tmp/streamlake-lock
	/tmp/streamlake-lock/bin/pip install -q --upgrade pip && /tmp/streamlake-lock/bin/pip install -q -e ".[dev]"
	/tmp/streamlake-lock/bin/pip install -q --no-deps openai-whisper==20250625 recbole==1.2.1
	/tmp/streamlake-lock/bin/pip freeze --exclude-editable | grep -v '^streamlake' > requirements.lock

clean:
	rm -rf $(DATA_DIR)
