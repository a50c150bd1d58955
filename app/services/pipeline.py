"""The stages every image task shares: prepare uploads in parallel, one batched call, outcomes."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import InferenceTimeout, ServiceError
from app.observability import ServiceMetrics
from app.runtime.batching import Reservation
from app.runtime.registry import ServedModel
from app.schemas import ErrorBody, ModelRef
from app.services.uploads import ImagePreparer, PreparedImage, Upload

Outcome = tuple[PreparedImage, Any] | ServiceError


@dataclass(frozen=True, kw_only=True)
class ReservedUploads:
    """A request's uploads and the model's queue slots taken while they arrived (one each)."""

    images: list[Upload]
    reservation: Reservation


async def run_uploads(
    uploads: ReservedUploads,
    served: ServedModel,
    make_input: Callable[[PreparedImage], Any],
    *,
    preparer: ImagePreparer,
    timeout_s: float,
    metrics: ServiceMetrics,
    fingerprint: bool = False,
) -> list[Outcome]:
    """Per upload, in order: (prepared image, model output), or the error that upload got.

    A request with a single unusable upload raises that upload's error instead. `fingerprint`
    adds each image's perceptual hash (galleries' near-duplicate check).
    """
    # The slots were reserved before any decoding (app/api/deps.py), and a full queue was
    # refused while the uploads arrived: no decoded image is thrown away.
    try:
        async with asyncio.timeout(timeout_s):
            prepared = await _prepare(uploads.images, served, preparer, fingerprint)
            usable = [item for item in prepared if isinstance(item, PreparedImage)]
            inputs = [make_input(item) for item in usable]
            outputs = iter(await served.batcher.submit_many(inputs, uploads.reservation))
    except TimeoutError:
        raise InferenceTimeout(f"No answer within {timeout_s} s.", timeout_s=timeout_s) from None
    outcomes: list[Outcome] = [
        item if isinstance(item, ServiceError) else (item, next(outputs)) for item in prepared
    ]
    for outcome in outcomes:
        code = outcome.code if isinstance(outcome, ServiceError) else "ok"
        metrics.images.labels(served.name, code).inc()
        if not isinstance(outcome, ServiceError):
            metrics.decode_seconds.labels(served.name).observe(outcome[0].decode_s)
    if len(outcomes) == 1 and isinstance(outcomes[0], ServiceError):
        raise outcomes[0]
    return outcomes


async def _prepare(
    uploads: list[Upload], served: ServedModel, preparer: ImagePreparer, fingerprint: bool
) -> list[PreparedImage | ServiceError]:
    # Announce the images being decoded so the batcher waits for them, and only for them.
    served.batcher.expect(len(uploads))
    try:
        prepared = await preparer.prepare_all(uploads, served.card.input, fingerprint=fingerprint)
    finally:
        served.batcher.expect(-len(uploads))
    for item in prepared:
        if isinstance(item, ServiceError):
            _forget_tracebacks(item)
    return prepared


def _forget_tracebacks(error: BaseException) -> None:
    # A returned error's traceback holds the decoding frames, and through them the upload's
    # bytes, in a reference cycle that only a full garbage collection frees: 20 MiB per bad
    # image kept for minutes (README, Hardening). The error's message and details suffice.
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


async def failed_upload_digests(
    uploads: list[Upload], outcomes: list[Outcome], preparer: ImagePreparer
) -> dict[int, str]:
    """sha256 of each upload that failed, by index (the others carry theirs in PreparedImage)."""
    failed = [index for index, outcome in enumerate(outcomes) if not isinstance(outcome, tuple)]
    if not failed:  # the usual case: no trip to the thread pool
        return {}
    digests = await preparer.digest_all([uploads[index] for index in failed])
    return dict(zip(failed, digests, strict=True))


def model_ref(served: ServedModel) -> ModelRef:
    """The exact model that answered."""
    return ModelRef(name=served.name, version=served.card.version, sha256=served.loaded.sha256)


def error_body(error: ServiceError) -> ErrorBody:
    """The error entry of one image in a batch."""
    return ErrorBody.model_validate(error.to_body())
