# The two quickstart commands: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint test-tools bench screenshots fuzz-api clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/healthd run -c config.example.yaml

# Debian tools the namespace, capture and reference-tool tests use (root only; skipped otherwise).
test-tools:
	@sh .ci/install-test-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy daemon

test: $(STAMP) test-tools lint
	$(BIN)/pytest -q

# The benchmark: healthd against blackbox_exporter (scheduled by Prometheus) and fping, same run.
bench: $(STAMP)
	@sh .ci/install-test-tools.sh prometheus-blackbox-exporter
	$(BIN)/python bench/run.py

# The status page's screenshots in docs/screenshots/: headless Chromium, 1,440 and 375 px, light and dark.
screenshots: $(STAMP)
	@sh .ci/install-test-tools.sh
	HEALTHD_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_page_browser.py -k screenshots

# The API fuzz suite at size: schemathesis, 200 cases per operation and phase, up to 2 min per run.
fuzz-api: $(STAMP)
	HEALTHD_API_FUZZ_EXAMPLES=200 HEALTHD_API_FUZZ_SECONDS=120 $(BIN)/pytest -q -s tests/fuzz/test_api_schemathesis.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
