# Two commands set everything up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
SAMPLE := catalogs/sample-pair
DEMO_OUT := demo-output

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(VENV)/bin/sn9cloud register $(SAMPLE)/optical.tif $(SAMPLE)/sar.tif \
		-o $(DEMO_OUT)/offsets.tif --report $(DEMO_OUT)/report.json
	$(VENV)/bin/python -m sn9cloud.demo_check $(SAMPLE) $(DEMO_OUT)/offsets.tif

test: $(STAMP)
	$(VENV)/bin/ruff check sn9cloud tests benchmarks catalogs
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
