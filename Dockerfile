# visionserve: the HTTP service (app/ only) with the default models baked in.
#
#   docker build -t visionserve .                                    # CPU wheels: the small image
#   docker build --build-arg TORCH_VARIANT=cu130 -t visionserve:cuda .   # CUDA wheels, for --gpus
#
# torch and torchvision come from TORCH_INDEX_URL, by default PyTorch's wheel index for
# TORCH_VARIANT (cpu, cu126, cu128, cu130, ...); everything else from PyPI. A mirror or a local
# wheel index can replace either one: TORCH_INDEX_URL, and PIP_INDEX_URL / PIP_EXTRA_INDEX_URL,
# which pip reads from the environment (pass `--network host` to reach an index on localhost).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The versions live in requirements/serve.txt (the lock, README "Development"). Split it into
# torch's pins and the rest in a stage of their own, so that the torch layer (the big one) is
# rebuilt only when its pins or index change, not when anything else in the lock does.
FROM ${PYTHON_IMAGE} AS pins
WORKDIR /src
COPY requirements/serve.txt deploy/split_lock.py ./
RUN python split_lock.py serve.txt .


FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY --from=pins /src/torch.txt ./
# torch's index holds other builds than PyPI's: pinned by version, not by the lock's hashes.
RUN pip install --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/${TORCH_VARIANT}}" \
        -r torch.txt
# Everything else exactly as locked (hash-checked, nothing resolved anew), then checked whole.
COPY --from=pins /src/locked.txt ./
RUN pip install --require-hashes --no-deps -r locked.txt && pip check

# The project as a wheel, without the train/dev extras (.dockerignore keeps training/ and tests/
# out). It is installed in the runtime stage, so a code change leaves the big venv layer as it is.
COPY pyproject.toml README.md ./
COPY app ./app
# The lock's setuptools builds it: --no-build-isolation fetches no unpinned build backend.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="visionserve" \
      org.opencontainers.image.description="Batched image classification over HTTP."
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin visionserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISION_HOST=0.0.0.0 \
    VISION_PORT=8000 \
    VISION_MODEL_DIR=/models
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-deps --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY deploy/healthcheck.py /usr/local/bin/visionserve-healthcheck
# Baked-in default models, owned by root and read-only to the service; mount a folder at
# /models (read-only) to serve others instead.
COPY models/ /models/

USER 10001:10001
WORKDIR /home/visionserve
# The embedded gallery store (VISION_GALLERY_DIR, relative to here); compose mounts a volume on
# it, which takes this folder's owner.
RUN mkdir galleries
EXPOSE 8000
# /readyz is 200 once every model is loaded and warmed up; loading takes seconds on CPU.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["visionserve-healthcheck"]
# uvicorn drains in-flight requests on SIGTERM (up to VISION_REQUEST_TIMEOUT_S + 5 s), then exits;
# give it that long before a SIGKILL (docker stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app"]
