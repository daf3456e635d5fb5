# The two quickstart commands: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint test-tools bench screenshots fuzz fuzz-api clean

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
	$(BIN)/ruff format --check .
	$(BIN)/mypy daemon bench

# The second run, on uvloop (the daemon's default where installed; the first run uses asyncio's loop):
# every probe (ICMP in both socket modes, HTTP phase timings, the hostile targets), the scheduler,
# the API and its hardening, /metrics, events and notifications.
UVLOOP_TESTS := tests/probes tests/test_api.py tests/test_api_dicts.py tests/test_api_hardening.py \
	tests/test_scrape.py tests/test_loops.py tests/test_scheduler.py tests/test_transition_interval.py \
	tests/test_exhaustion.py tests/test_app.py tests/test_app_transitions.py tests/test_reload.py \
	tests/test_events.py tests/test_events_api.py tests/test_webhook.py tests/test_alertmanager.py

test: $(STAMP) test-tools lint
	$(BIN)/pytest -q
	HEALTHD_TEST_LOOP=uvloop $(BIN)/pytest -q -p no:cacheprovider $(UVLOOP_TESTS)

# The benchmark: healthd against blackbox_exporter (scheduled by Prometheus) and fping, same run.
bench: $(STAMP)
	@sh .ci/install-test-tools.sh prometheus-blackbox-exporter
	$(BIN)/python bench/run.py

# The config fuzzer at full size (CI runs ~2,800 cases): 100,000 seeded cases from a random start,
# 3,000 hypothesis cases, 1,000 through `healthd check-config`. The start is printed for replay.
fuzz: $(STAMP)
	HEALTHD_FUZZ_RANDOM=1 HEALTHD_FUZZ_CASES=100000 HEALTHD_FUZZ_HYPOTHESIS_CASES=3000 \
	HEALTHD_FUZZ_PROCESS_CASES=1000 $(BIN)/pytest -q -s -p no:cacheprovider tests/fuzz/test_config_fuzz.py

# The status page's screenshots in docs/screenshots/: headless Chromium, 1,440 and 375 px, light and dark.
screenshots: $(STAMP)
	@sh .ci/install-test-tools.sh
	HEALTHD_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_page_browser.py -k screenshots

# The API fuzz suite at size: schemathesis, 200 cases per operation and phase, up to 2 min per run.
fuzz-api: $(STAMP)
	HEALTHD_API_FUZZ_EXAMPLES=200 HEALTHD_API_FUZZ_SECONDS=120 $(BIN)/pytest -q -s tests/fuzz/test_api_schemathesis.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
