"""Gallery management: create, describe, add reference photos, delete; bound to one model."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import torch

from app.errors import CannotEmbed, GalleryConflict, ValidationFailed
from app.galleries.cache import IndexCache
from app.galleries.index import Duplicate, GalleryIndex
from app.galleries.records import (
    Embeddings,
    GalleryLimits,
    GalleryRecord,
    NewGallery,
    NewReference,
)
from app.galleries.sql import SqlGalleryStore
from app.observability import ServiceMetrics
from app.runtime.inference import ClassifiedImage, ClassifyInput
from app.runtime.registry import ModelRegistry, ServedModel
from app.schemas import (
    AddReferencesResponse,
    DeleteProductResponse,
    DuplicatePublic,
    GalleriesResponse,
    GalleryCreateRequest,
    GalleryPublic,
    GalleryResponse,
    ProductPublic,
    ReferenceResult,
)
from app.services.pipeline import (
    Outcome,
    ReservedUploads,
    error_body,
    failed_upload_digests,
    model_ref,
    run_uploads,
)
from app.services.uploads import ImagePreparer, PreparedImage, Upload

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class GalleryServices:
    """What gallery requests share: the store, each replica's indexes, limits, the models."""

    store: SqlGalleryStore
    indexes: IndexCache
    limits: GalleryLimits
    duplicate_distance: int
    registry: ModelRegistry
    preparer: ImagePreparer
    timeout_s: float
    metrics: ServiceMetrics


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """A blocking store call, off the event loop."""
    return await anyio.to_thread.run_sync(function, *args)


@dataclass(frozen=True, kw_only=True, slots=True)
class GalleryTarget:
    """A gallery as stored and the served model it is bound to (checked)."""

    record: GalleryRecord
    served: ServedModel


async def gallery_target(services: GalleryServices, name: str) -> GalleryTarget:
    """The gallery (404) and its model, refused (409) when it cannot serve the gallery."""
    record = await in_thread(services.store.gallery, name)
    return GalleryTarget(record=record, served=bound_model(services, record))


def embedding_model(registry: ModelRegistry, name: str) -> ServedModel:
    """A served classifier that embeds, or 404/409."""
    served = registry.get_for_task(name, "classify")
    if not served.card.embeds:
        raise CannotEmbed(
            f"Model {name!r} has no embedding output (its card's `outputs`), so it cannot "
            "build or search a gallery.",
            model=name,
        )
    return served


def bound_model(services: GalleryServices, record: GalleryRecord) -> ServedModel:
    """The gallery's model; 409 when its archive is no longer the one the gallery was built with."""
    # The version built with, if still served beside newer ones; else the default version (409).
    ref = services.registry.ref_for_sha256(record.model, record.model_sha256)
    served = embedding_model(services.registry, ref)
    if served.loaded.sha256 != record.model_sha256:
        raise GalleryConflict(
            f"Gallery {record.name!r} was built with {record.model!r} sha256 "
            f"{record.model_sha256[:12]}, but the served {record.model!r} is "
            f"{served.loaded.sha256[:12]}. Rebuild it: DELETE /galleries/{record.name}, PUT it "
            "again and re-add the reference photos (python -m training gallery build does both).",
            gallery=record.name,
            gallery_sha256=record.model_sha256,
            served_sha256=served.loaded.sha256,
        )
    return served


async def create_gallery(
    services: GalleryServices, name: str, request: GalleryCreateRequest
) -> tuple[GalleryResponse, bool]:
    """Create (idempotent) a gallery bound to the model's archive; and whether it was new."""
    served = embedding_model(services.registry, request.model)
    threshold, source = _threshold(served, request.threshold)
    assert served.card.embedding_dim is not None  # embedding_model checked
    new = NewGallery(
        name=name,
        model=served.name,
        model_sha256=served.loaded.sha256,
        embedding_dim=served.card.embedding_dim,
        threshold=threshold,
        threshold_source=source,
    )
    record, created = await in_thread(services.store.create_gallery, new)
    return await describe_gallery(services, record.name), created


def _threshold(served: ServedModel, requested: float | None) -> tuple[float, str]:
    if requested is not None:
        return requested, "given when the gallery was created"
    similarity = served.card.similarity
    if similarity is None:
        raise ValidationFailed(
            f"Model {served.name!r} has no similarity threshold in its card; give one in the "
            "body (`threshold`, cosine similarity), e.g. from python -m training evaluate-gallery.",
            model=served.name,
        )
    return similarity.threshold, similarity.data


async def describe_gallery(services: GalleryServices, name: str) -> GalleryResponse:
    """The gallery and its products."""
    record = await in_thread(services.store.gallery, name)
    products = await in_thread(services.store.products, name)
    public = _public(record)
    return GalleryResponse(
        **public.model_dump(),
        products=[
            ProductPublic(product_id=p.product_id, references=p.references) for p in products
        ],
    )


async def list_galleries(services: GalleryServices) -> GalleriesResponse:
    """Every gallery, by name."""
    records = await in_thread(services.store.galleries)
    return GalleriesResponse(galleries=[_public(record) for record in records])


def _public(record: GalleryRecord) -> GalleryPublic:
    return GalleryPublic(
        name=record.name,
        model=record.model,
        model_sha256=record.model_sha256,
        embedding_dim=record.embedding_dim,
        threshold=record.threshold,
        threshold_source=record.threshold_source,
        product_count=record.products,
        reference_count=record.references,
        embedding_bytes=record.references * record.embedding_dim * 4,
        created_at=record.created_at,
        generation=record.generation,
    )


async def delete_product(
    services: GalleryServices, name: str, product_id: str
) -> DeleteProductResponse:
    """Remove one product and its references."""
    deleted = await in_thread(services.store.delete_product, name, product_id)
    return DeleteProductResponse(gallery=name, product_id=product_id, deleted_references=deleted)


async def delete_gallery(services: GalleryServices, name: str) -> None:
    """Remove a gallery and everything in it."""
    await in_thread(services.store.delete_gallery, name)
    services.indexes.forget(name)


def keep_embeddings(embeddings: torch.Tensor) -> list[Embeddings]:
    """The "search" that adding references runs: each image's embedding comes back."""
    return list(embeddings.float().cpu().numpy())


async def add_references(
    services: GalleryServices, target: GalleryTarget, product_id: str, uploads: ReservedUploads
) -> AddReferencesResponse:
    """Embed and hash every usable upload, then store them all in one transaction."""
    record, served, name = target.record, target.served, target.record.name
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: ClassifyInput(image.pixels, 1, keep_embeddings),
        preparer=services.preparer,
        timeout_s=services.timeout_s,
        metrics=services.metrics,
        fingerprint=True,
    )
    index = await services.indexes.current(record)  # duplicates of what was stored before
    new = {
        position: _new_reference(upload, outcome)
        for position, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
        if isinstance(outcome, tuple)
    }
    ids, held = await in_thread(
        services.store.add_references, name, product_id, list(new.values()), services.limits
    )
    reference_ids = dict(zip(new, ids, strict=True))
    digests = await failed_upload_digests(uploads.images, outcomes, services.preparer)
    results = [
        _reference_result(
            position,
            upload.filename,
            outcome,
            digests=digests,
            reference_id=reference_ids.get(position),
            index=index,
            duplicate_distance=services.duplicate_distance,
        )
        for position, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
    ]
    return AddReferencesResponse(
        gallery=name,
        product_id=product_id,
        model=model_ref(served),
        added=len(ids),
        references=held,
        results=results,
    )


def _new_reference(upload: Upload, outcome: tuple[PreparedImage, ClassifiedImage]) -> NewReference:
    image, classified = outcome
    assert image.phash is not None  # run_uploads was asked to fingerprint
    return NewReference(
        embedding=classified.found,
        phash=image.phash,
        image_sha256=image.sha256,
        filename=upload.filename,
    )


def _reference_result(
    position: int,
    filename: str | None,
    outcome: Outcome,
    *,
    digests: dict[int, str],
    reference_id: str | None,
    index: GalleryIndex,
    duplicate_distance: int,
) -> ReferenceResult:
    if not isinstance(outcome, tuple):
        return ReferenceResult(
            index=position,
            filename=filename,
            image_sha256=digests[position],
            error=error_body(outcome),
        )
    image = outcome[0]
    assert image.phash is not None
    return ReferenceResult(
        index=position,
        filename=filename,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        reference_id=reference_id,
        duplicate_of=duplicate_public(index.duplicate_of(image.phash, duplicate_distance)),
    )


def duplicate_public(duplicate: Duplicate | None) -> DuplicatePublic | None:
    """The response form of a near-duplicate, if any."""
    if duplicate is None:
        return None
    return DuplicatePublic(
        reference_id=duplicate.reference_id,
        product_id=duplicate.product_id,
        distance=duplicate.distance,
    )
