# Two commands set everything up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
SAMPLE := catalogs/sample
DEMO_OUT := demo-output

.PHONY: venv demo browse test lint bench clean lock

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	# the locked set: pip resolves nothing (without it, s3fs's narrow botocore pin sends pip
	# backtracking through boto3's releases for half an hour)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Re-lock constraints.txt from pyproject.toml (uv resolves in seconds where pip backtracks).
lock:
	$(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install -q uv
	echo torch==2.13.0 > .lock-venv/override.txt
	.lock-venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --override .lock-venv/override.txt --no-header --no-annotate -q -o .lock-venv/lock.txt
	{ sed -n '1,4p' constraints.txt; grep -vE '^(nvidia-|cuda-|triton==)' .lock-venv/lock.txt; } \
	  > constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

venv: $(STAMP)

# Registers every pair of the bundled sample catalog and publishes the results as a static
# STAC catalog under demo-output/ (a second run skips what is already published).
demo: $(STAMP)
	$(VENV)/bin/sn9cloud run $(SAMPLE)/catalog.json --out $(DEMO_OUT)
	$(VENV)/bin/python -m sn9cloud.demo_check $(SAMPLE) $(DEMO_OUT)

# STAC Browser on the demo's results, at http://127.0.0.1:8090/ (built once; needs npm).
browse: $(STAMP)
	deploy/stac-browser/stac-browser.sh build
	$(VENV)/bin/sn9cloud browse $(DEMO_OUT)

# ruff, then mypy (strict, the whole package: pyproject.toml), then the suite.
# PostgreSQL + PostGIS for the STAC API tests and Chromium for the browser test come from
# Debian packages, STAC Browser from npm (each installed or built once); the tests start
# their own throwaway database, STAC API, S3 server, browser server and Ray clusters.
test: $(STAMP)
	deploy/stac-api/stac-api.sh install
	deploy/stac-browser/stac-browser.sh install
	deploy/stac-browser/stac-browser.sh build
	$(VENV)/bin/ruff check sn9cloud tests benchmarks catalogs training
	$(VENV)/bin/mypy
	SN9CLOUD_REQUIRE_SERVICES=1 $(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache deploy/stac-browser/dist
