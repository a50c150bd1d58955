"""Batched classifier calls: the functions the batcher's worker threads run."""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.runtime.card import ModelCard
from app.runtime.loader import LoadedModel
from app.runtime.openset import OpenSetScorer, calibrated_probabilities, scorer_for

# Called in the worker thread with the embeddings [n, D] of the batch's items that share it;
# returns one result per row (a gallery search: every concurrent match is one matrix product).
EmbeddingSearch = Callable[[torch.Tensor], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class ClassifyInput:
    """One preprocessed image (CHW uint8), how many classes the caller wants back, and an
    optional search to run on its embedding."""

    pixels: torch.Tensor
    top_k: int
    search: EmbeddingSearch | None = None
    explain: bool = False  # keep this image's activation maps


RankedClasses = list[tuple[int, float]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifiedImage:
    """One image's classes, best first, with (calibrated) probabilities and its unknown score."""

    ranking: RankedClasses
    unknown_score: float | None  # None for a model without calibration
    found: Any = None  # what the item's search returned for it
    maps: "ActivationMaps | None" = None  # when the item asked to explain


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationMaps:
    """One image's activation maps on the CPU: embedding_map [D, h, w], class_map [h, w]."""

    embedding_map: torch.Tensor
    class_map: torch.Tensor


def split_outputs(
    output: Any, card: ModelCard, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits [N, C], embeddings [N, D] or None) from a classifier's forward, shape-checked."""
    logits, embeddings = (output[0], output[1]) if card.embeds else (output, None)
    expected = (batch_size, len(card.labels))
    if not isinstance(logits, torch.Tensor) or logits.shape != expected:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise RuntimeError(f"model {card.name!r} returned logits {shape}; expected {expected}")
    if embeddings is not None and embeddings.shape != (batch_size, card.embedding_dim):
        raise RuntimeError(
            f"model {card.name!r} returned embeddings {tuple(embeddings.shape)}; "
            f"expected ({batch_size}, {card.embedding_dim})"
        )
    return logits, embeddings


def split_maps(
    output: Any, card: ModelCard, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(embedding_map [N, D, h, w], class_map [N, h, w]) when the card lists them, shape-checked."""
    if not card.explains:
        return None
    embedding_map, class_map = output[2], output[3]
    if embedding_map.dim() != 4 or embedding_map.shape[:2] != (batch_size, card.embedding_dim):
        raise RuntimeError(f"model {card.name!r} returned embedding_map {embedding_map.shape}")
    if class_map.shape != (batch_size, *embedding_map.shape[2:]):
        raise RuntimeError(f"model {card.name!r} returned class_map {class_map.shape}")
    return embedding_map, class_map


def make_classify_runner(
    model: LoadedModel,
) -> Callable[[list[ClassifyInput]], list[ClassifiedImage]]:
    """A batch function: stack, one forward pass, calibrated softmax, top-k, unknown scores."""
    card = model.card
    num_labels = len(card.labels)
    to_device = make_device_transfer(model.device)
    temperature = card.calibration.temperature if card.calibration else 1.0
    scorer = scorer_for(card.calibration, model.references) if card.calibration else None

    def run(items: list[ClassifyInput]) -> list[ClassifiedImage]:
        batch = to_device(torch.stack([item.pixels for item in items]))
        with torch.inference_mode():
            with forward_precision(model):
                output = model.module(batch)
            logits, embeddings = fp32_outputs(*split_outputs(output, card, len(items)))
            maps = _kept_maps(items, split_maps(output, card, len(items)))
            k = min(max(item.top_k for item in items), num_labels)
            scores, class_ids = calibrated_probabilities(logits, temperature).topk(k, dim=1)
            unknown = _unknown_scores(scorer, logits, embeddings)
            found = _run_searches(items, embeddings)
        score_rows, id_rows = scores.cpu().tolist(), class_ids.cpu().tolist()
        return [
            ClassifiedImage(
                ranking=list(zip(ids[: item.top_k], row[: item.top_k], strict=True)),
                unknown_score=None if unknown is None else unknown[index],
                found=found.get(index),
                maps=maps.get(index),
            )
            for index, (item, ids, row) in enumerate(zip(items, id_rows, score_rows, strict=True))
        ]

    return run


def _unknown_scores(
    scorer: OpenSetScorer | None, logits: torch.Tensor, embeddings: torch.Tensor | None
) -> list[float] | None:
    if scorer is None:
        return None
    scores: list[float] = scorer(logits, embeddings).cpu().tolist()
    return scores


def _kept_maps(
    items: list[ClassifyInput], maps: tuple[torch.Tensor, torch.Tensor] | None
) -> dict[int, ActivationMaps]:
    """The maps of the items that asked to explain, copied off the batch (and the device)."""
    if maps is None:
        return {}
    return {
        index: ActivationMaps(
            embedding_map=maps[0][index].float().cpu().clone(),
            class_map=maps[1][index].float().cpu().clone(),
        )
        for index, item in enumerate(items)
        if item.explain
    }


def _run_searches(items: list[ClassifyInput], embeddings: torch.Tensor | None) -> dict[int, Any]:
    """Each search once, over the rows of the items that asked for it."""
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        if item.search is not None:
            groups.setdefault(id(item.search), []).append(index)
    if groups and embeddings is None:
        raise RuntimeError("a search was asked of a model without an embedding output")
    found: dict[int, Any] = {}
    for rows in groups.values():
        search = items[rows[0]].search
        assert search is not None and embeddings is not None  # grouped above
        results = search(embeddings[rows])
        if len(results) != len(rows):
            raise RuntimeError(f"a search returned {len(results)} results for {len(rows)} rows")
        found.update(zip(rows, results, strict=True))
    return found


def make_device_transfer(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """CPU: identity. CUDA: pinned host memory and a non-blocking copy; a tensor decoded on the
    GPU (app/gpu_imaging.py) is there already."""
    if device.type != "cuda":
        return lambda batch: batch

    def transfer(batch: torch.Tensor) -> torch.Tensor:
        if batch.device == device:
            return batch
        return batch.pin_memory().to(device, non_blocking=True)

    return transfer


@contextlib.contextmanager
def forward_precision(model: LoadedModel) -> Iterator[None]:
    """Where a batch function runs the forward pass: under autocast to the model's half type
    when it is served in one (runtime/precision.py), else as loaded."""
    if model.autocast_dtype is None:
        yield
        return
    with torch.autocast(model.device.type, dtype=model.autocast_dtype):
        yield


def fp32_outputs(
    logits: torch.Tensor, embeddings: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A half forward's outputs in fp32, before softmax, calibration and searches."""
    return logits.float(), None if embeddings is None else embeddings.float()


def classify_warm_up_batch(
    channels: int, height: int, width: int, size: int
) -> list[ClassifyInput]:
    """`size` blank images shaped as the classifier's input."""
    pixels = torch.zeros((channels, height, width), dtype=torch.uint8)
    return [ClassifyInput(pixels, 1)] * size
