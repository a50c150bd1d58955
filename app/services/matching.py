"""Match uploads against a gallery: products by embedding similarity, a decision, duplicates."""

from app.galleries.index import GalleryIndex, Hit
from app.runtime.inference import ClassifiedImage, ClassifyInput
from app.runtime.registry import ServedModel
from app.schemas import GalleryMatch, MatchResponse, MatchResult
from app.services.explanations import heat_map, require_explaining, similarity_map
from app.services.galleries import GalleryServices, GalleryTarget, duplicate_public
from app.services.pipeline import (
    Outcome,
    ReservedUploads,
    error_body,
    failed_upload_digests,
    model_ref,
    run_uploads,
)


async def match_uploads(
    services: GalleryServices,
    target: GalleryTarget,
    uploads: ReservedUploads,
    *,
    top_k: int,
    threshold: float | None,
    explain: bool = False,
) -> MatchResponse:
    """Per upload: the `top_k` most similar products, `match` or `unknown`, and duplicates.

    The search runs in the model's batcher, on the batch's embeddings at once, against the
    gallery generation current when the request started.
    """
    record, served, name = target.record, target.served, target.record.name
    if explain:
        require_explaining(served)
    index = await services.indexes.current(record)
    search = index.searcher(top_k)
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: ClassifyInput(image.pixels, 1, search, explain=explain),
        preparer=services.preparer,
        timeout_s=services.timeout_s,
        metrics=services.metrics,
        fingerprint=True,
    )
    accept = record.threshold if threshold is None else threshold
    digests = await failed_upload_digests(uploads.images, outcomes, services.preparer)
    results = [
        _result(
            position,
            upload.filename,
            outcome,
            digests=digests,
            index=index,
            accept=accept,
            duplicate_distance=services.duplicate_distance,
        )
        for position, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
    ]
    if explain:
        await _add_heat_maps(results, outcomes, index, served)
    return MatchResponse(gallery=name, model=model_ref(served), threshold=accept, results=results)


async def _add_heat_maps(
    results: list[MatchResult], outcomes: list[Outcome], index: GalleryIndex, served: ServedModel
) -> None:
    """The similarity map of each image's best match: where it looked like that reference."""
    for result, outcome in zip(results, outcomes, strict=True):
        if not isinstance(outcome, tuple) or outcome[1].maps is None or not result.matches:
            continue
        image, maps = outcome[0], outcome[1].maps
        reference = index.embedding_of(result.matches[0].reference_id)
        activation = similarity_map(maps.embedding_map, reference)
        result.heat_map = await heat_map(activation, image.width, image.height, served.card.input)


def _result(
    position: int,
    filename: str | None,
    outcome: Outcome,
    *,
    digests: dict[int, str],
    index: GalleryIndex,
    accept: float,
    duplicate_distance: int,
) -> MatchResult:
    if not isinstance(outcome, tuple):
        return MatchResult(
            index=position,
            filename=filename,
            image_sha256=digests[position],
            error=error_body(outcome),
        )
    image, output = outcome
    classified: ClassifiedImage = output
    hits: list[Hit] = classified.found
    assert image.phash is not None  # run_uploads was asked to fingerprint
    best = hits[0].similarity if hits else None
    return MatchResult(
        index=position,
        filename=filename,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        decision="match" if best is not None and best >= accept else "unknown",
        matches=[
            GalleryMatch(
                product_id=hit.product_id, reference_id=hit.reference_id, similarity=hit.similarity
            )
            for hit in hits
        ],
        duplicate_of=duplicate_public(index.duplicate_of(image.phash, duplicate_distance)),
    )
