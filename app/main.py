"""create_app(settings): the lifespan that loads models, the routers, one error handler."""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import anyio
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.api import (
    admin,
    classify,
    detect,
    docs,
    galleries,
    health,
    models,
    open_inference,
    segment,
)
from app.api.deps import reject_unknown_query, require_scope
from app.api.middleware import BodyGuardMiddleware, BodyLimits, RequestContextMiddleware
from app.api.readers import ModelReadersMiddleware
from app.api.responses import is_protocol_path, render_error
from app.api.state import LIFECYCLE_KEY, AppState, Lifecycle
from app.config import Settings
from app.errors import InternalError, ModelLoadError, ServiceError, ValidationFailed
from app.galleries.cache import IndexCache
from app.galleries.records import GalleryLimits
from app.galleries.sql import SqlGalleryStore
from app.galleries.store import open_store
from app.gpu_imaging import gpu_decoder_for
from app.imaging import ImageLimits
from app.memory import release_free_memory, tune_allocator
from app.observability import ServiceMetrics, configure_logging
from app.runtime.autotune import TuningPolicy
from app.runtime.batching import BatchPolicy
from app.runtime.device import (
    cores_per_process,
    plan_lone_threads,
    plan_threads,
    resolve_device,
)
from app.runtime.encryption import EncryptionError, ModelKey, load_model_keys
from app.runtime.precision import precision_for_device
from app.runtime.readers import ReaderEpochs
from app.runtime.registry import ModelRegistry
from app.runtime.reload import LoadPolicy, ModelReloader
from app.runtime.signing import KeyFileError, TrustedKey, load_trusted_keys
from app.runtime.threads import prepare_compute_thread
from app.runtime.watch import store_state, watch_store
from app.security.keyring import open_keyring
from app.services.galleries import GalleryServices
from app.services.uploads import ImagePreparer
from app.web import page

logger = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def create_app(settings: Settings | None = None, *, load_in_background: bool = False) -> FastAPI:
    """Build the service; models load in the lifespan, never at import.

    `load_in_background`: start-up ends before the models load, so the server listens at once
    (/healthz and /metrics answer, /readyz and model routes say not_ready until they are in).
    """
    settings = settings or Settings()
    metrics = ServiceMetrics()
    epochs = ReaderEpochs()
    lifespan = partial(
        _lifespan, settings=settings, metrics=metrics, epochs=epochs, background=load_in_background
    )
    app = FastAPI(
        title="visionserve",
        summary="Batched image classification, object detection and segmentation over HTTP.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        # Served by app.api.docs from local files, optionally behind the API key.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # Every request is counted until it answers, so a reload stops old models only after.
    app.add_middleware(ModelReadersMiddleware, epochs=epochs)
    # Added last = outermost: the context sees every answer, the guard's refusals included.
    app.add_middleware(
        BodyGuardMiddleware, limits=_body_limits(settings), release_memory=release_free_memory
    )
    app.add_middleware(
        RequestContextMiddleware,
        metrics_requests=metrics.observe_request,
        access_log=settings.access_log,
    )
    # Read now: a bad key file stops the start before any model loads.
    app.state.keyring = open_keyring(settings)
    app.add_exception_handler(ServiceError, _service_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error_handler)

    routers = (
        classify.router,
        detect.router,
        segment.router,
        galleries.router,
        models.router,
        admin.router,
        health.router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(open_inference.router)  # /v2: KServe and Triton clients
    app.include_router(open_inference.models_router)
    protect = settings.protect_docs_and_metrics
    app.include_router(
        health.metrics_router, dependencies=[Depends(require_scope("metrics"))] if protect else []
    )
    app.include_router(
        docs.router, dependencies=[Depends(require_scope("docs"))] if protect else []
    )
    app.mount(docs.ASSETS_PATH, docs.assets(), name="docs-assets")
    app.include_router(page.router)  # the browser page at /: public, its API calls carry the key
    app.mount(page.ASSETS_PATH, page.assets(), name="web-assets")
    return app


def _body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        max_body_bytes=settings.max_request_bytes,
        max_image_body_bytes=settings.max_image_bytes,
        max_receiving_bytes=settings.max_receiving_bytes,
        body_timeout_s=settings.body_timeout_s,
        min_body_rate_bytes_s=settings.min_body_rate_bytes_s,
    )


def create_listening_app() -> FastAPI:
    """What `python -m app` serves: listening at once while the models load behind it."""
    return create_app(load_in_background=True)


@asynccontextmanager
async def _lifespan(
    app: FastAPI,
    settings: Settings,
    metrics: ServiceMetrics,
    epochs: ReaderEpochs,
    background: bool,
) -> AsyncIterator[Mapping[str, object]]:
    configure_logging(settings.log_format, settings.log_level)  # also in worker processes
    tune_allocator(cores_per_process(settings.workers))
    plan = plan_runtime(settings)  # here: torch's thread settings belong to the main thread
    reloader = model_reloader(settings, plan, metrics, epochs)
    registry = reloader.registry
    limits = ImageLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
    )
    decode_threads = settings.decode_threads or cores_per_process(settings.workers)
    lifecycle = Lifecycle()
    store = await anyio.to_thread.run_sync(open_store, settings.gallery_dir, settings.gallery_url)
    tasks: list[asyncio.Task[None]] = []
    # Pinned to the plan's count, whatever torch's process-wide one is when a thread starts.
    start_decode_thread = partial(prepare_compute_thread, plan.torch_threads, settings.compute_nice)
    with ThreadPoolExecutor(
        decode_threads, thread_name_prefix="decode", initializer=start_decode_thread
    ) as pool:
        preparer = ImagePreparer(
            limits, pool, gpu_decoder_for(settings.gpu_decode, plan.device, limits)
        )
        galleries = gallery_services(settings, store, registry, preparer, metrics)
        app.state.services = AppState(
            settings, registry, preparer, metrics, lifecycle, galleries, reloader=reloader
        )
        logger.info("galleries in %s", store.location)
        seen = await anyio.to_thread.run_sync(store_state, reloader)  # before loading it
        if background:
            tasks.append(asyncio.create_task(_load_in_background(reloader, lifecycle)))
        else:
            await load_models(reloader)
        if settings.model_watch_s > 0:
            watch = watch_store(reloader, settings.model_watch_s, seen)
            tasks.append(asyncio.create_task(watch))
        try:
            yield {LIFECYCLE_KEY: lifecycle}  # the server flips it on SIGTERM
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await anyio.to_thread.run_sync(registry.stop)
            store.close()


async def load_models(reloader: ModelReloader) -> None:
    """Load the store (off the event loop), then start serving it."""
    registry = reloader.registry
    await anyio.to_thread.run_sync(reloader.reload)
    await anyio.to_thread.run_sync(registry.start)
    logger.info("ready: %d model(s) on %s", len(registry.models), registry.device)


async def _load_in_background(reloader: ModelReloader, lifecycle: Lifecycle) -> None:
    try:
        await load_models(reloader)
    except ModelLoadError as error:
        # What a failed start-up would have said; the server exits on it (app/server/runner.py).
        logger.error("start-up failed: %s", error)
        lifecycle.failed = str(error)


def gallery_services(
    settings: Settings,
    store: SqlGalleryStore,
    registry: ModelRegistry,
    preparer: ImagePreparer,
    metrics: ServiceMetrics,
) -> GalleryServices:
    """What gallery requests share, from the settings."""
    cap = settings.gallery_max_references_per_product
    return GalleryServices(
        store=store,
        indexes=IndexCache(store),
        limits=GalleryLimits(
            max_references_per_product=cap,
            max_products_per_gallery=settings.gallery_max_products,
        ),
        duplicate_distance=settings.gallery_duplicate_distance,
        registry=registry,
        preparer=preparer,
        timeout_s=settings.request_timeout_s,
        metrics=metrics,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimePlan:
    """The device and the thread plan every model is served (and tuned) under."""

    device: torch.device
    inference_threads: int
    torch_threads: int
    lone_threads: int  # intra-op threads of a batch that runs alone (runtime/threads.py)


def plan_runtime(settings: Settings) -> RuntimePlan:
    """Resolve the device and thread plan, and set torch's intra-op threads to it."""
    device = resolve_device(settings.device)
    inference_threads, torch_threads = plan_threads(
        device, settings.inference_threads, settings.torch_threads, settings.workers
    )
    torch.set_num_threads(torch_threads)
    lone_threads = plan_lone_threads(
        device, torch_threads, settings.lone_batch_threads, settings.workers
    )
    logger.info(
        "%d inference thread(s) per model, %d intra-op thread(s), %d for a batch running alone",
        inference_threads,
        torch_threads,
        lone_threads,
    )
    return RuntimePlan(
        device=device,
        inference_threads=inference_threads,
        torch_threads=torch_threads,
        lone_threads=lone_threads,
    )


def model_reloader(
    settings: Settings,
    plan: RuntimePlan,
    metrics: ServiceMetrics | None = None,
    epochs: ReaderEpochs | None = None,
    remeasure: bool = False,
) -> ModelReloader:
    """An empty registry and what loads the store into it, under `plan` (a bad key file raises)."""
    policy = BatchPolicy(
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000,
        queue_limit=settings.queue_limit,
        threads=plan.inference_threads,
        lone_threads=plan.lone_threads,
        own_threads=plan.torch_threads,
        nice=settings.compute_nice,
    )
    tuning = TuningPolicy(
        optimize_cpu=settings.optimize_cpu,
        autotune_batch_size=settings.autotune_batch_size,
        max_batch_size=settings.max_batch_size,
        inference_threads=plan.inference_threads,
        torch_threads=plan.torch_threads,
        profile_dir=settings.tuning_dir,
        remeasure=remeasure,
    )
    trusted = _trusted_keys(settings)
    load = LoadPolicy(
        model_dir=settings.model_dir,
        device=plan.device,
        batching=policy,
        tuning=tuning,
        trusted_keys=trusted,
        model_keys=_model_keys(settings),
        observe_batch=metrics.observe_batch if metrics else None,
        retire_wait_s=settings.retire_wait_s,
        precision=precision_for_device(settings.cuda_precision, plan.device),
    )
    registry = ModelRegistry(plan.device, trusted, epochs)
    return ModelReloader(registry, load, metrics)


def load_registry(
    settings: Settings,
    plan: RuntimePlan,
    metrics: ServiceMetrics | None = None,
    remeasure: bool = False,
) -> ModelRegistry:
    """Every model of the store loaded, tuned and warmed up under `plan` (not yet started)."""
    reloader = model_reloader(settings, plan, metrics, remeasure=remeasure)
    reloader.reload()
    return reloader.registry


def _trusted_keys(settings: Settings) -> dict[str, TrustedKey]:
    """The keys model signatures must verify against; none means signatures are not checked."""
    if not settings.trusted_keys:
        logger.warning(
            "model signatures are not checked (VISION_TRUSTED_KEYS is empty): any model in %s "
            "is served",
            settings.model_dir,
        )
        return {}
    try:
        keys = load_trusted_keys(settings.trusted_keys)
    except (KeyFileError, OSError) as error:
        raise ModelLoadError(f"VISION_TRUSTED_KEYS: {error}") from error
    names = ", ".join(f"{key.name} ({key.key_id})" for key in keys.values())
    logger.info("models must be signed by a trusted key: %s", names)
    return keys


def _model_keys(settings: Settings) -> dict[str, ModelKey]:
    """The keys that open encrypted archives (by key id); a bad key path stops the start."""
    try:
        keys = load_model_keys(settings.model_keys)
    except (EncryptionError, OSError) as error:
        raise ModelLoadError(f"VISION_MODEL_KEYS: {error}") from error
    if keys:
        names = ", ".join(f"{key.name} ({key.key_id})" for key in keys.values())
        logger.info("model decryption keys: %s", names)
    return keys


async def _service_error_handler(request: Request, error: ServiceError) -> JSONResponse:
    return render_error(error, request.url.path)


async def _validation_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"location": list(item["loc"]), "message": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    failed = ValidationFailed("The request parameters are invalid.", errors=errors)
    return render_error(failed, request.url.path)


async def _http_error_handler(request: Request, error: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(error.status_code, "invalid_request")
    body: object = {"code": code, "message": str(error.detail), "details": {}}
    if is_protocol_path(request.url.path):
        body = f"{code}: {error.detail}"
    return JSONResponse({"error": body}, status_code=error.status_code, headers=error.headers)


async def _internal_error_handler(request: Request, error: Exception) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id", "unknown")
    logger.error("internal error in request %s", request_id, exc_info=error)
    internal = InternalError("Internal error; quote the request id.", request_id=request_id)
    return render_error(internal, request.url.path)
