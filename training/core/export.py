"""Export a model to models/<name>/: script, embed the card, save, reload, verify (the only save).

The archive is written only after the reloaded scripted module reproduces the eager module's
outputs on fixed inputs; card.json beside it carries the archive's sha256.
"""

import contextlib
import hashlib
import io
import logging
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from app.runtime.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    REFERENCE_FILENAME,
    ModelCard,
    parse_card,
    stored_card_json,
)
from app.runtime.inference import split_maps, split_outputs

logger = logging.getLogger(__name__)

PARITY_SEED = 20261121
PARITY_BATCH = 2

# A task's own comparison of eager and reloaded module (raises ExportError on a mismatch).
ParityCheck = Callable[[nn.Module, torch.jit.ScriptModule, ModelCard], None]


class ExportError(RuntimeError):
    """The scripted model does not reproduce the eager one, or cannot be scripted."""


def export_model(
    module: nn.Module,
    card: ModelCard,
    store: Path,
    *,
    atol: float = 1e-4,
    freeze: bool = True,
    extra_inputs: Sequence[torch.Tensor] = (),
    parity: ParityCheck | None = None,
) -> Path:
    """Write `store/<card.name>/model.pt` and `card.json`; return the model folder.

    `extra_inputs` (detectors): real images added to the fixed parity inputs, so a trained
    detector is compared on images where it finds something, not only on noise.
    `parity`: a task's own check (segmenters), instead of the classifier/detector ones here.
    """
    module = module.eval()
    scripted = _script(module, freeze)
    archive = _serialize(scripted, card)
    reloaded = _reload(archive, card)
    if parity is not None:
        parity(module, reloaded, card)
    else:
        check_parity(module, reloaded, card, atol=atol, extra_inputs=extra_inputs)
    return _write(archive, card, store / card.name)


def rewrite_archive(
    module: torch.jit.ScriptModule,
    card: ModelCard,
    store: Path,
    *,
    references: torch.Tensor | None = None,
) -> Path:
    """Save an already exported module again under a new card (e.g. with calibration added).

    The module's graph and weights are unchanged; the archive is rewritten because the card
    (and the open-set reference embeddings) live inside it. The reloaded archive must give the
    module's outputs and carry exactly the new card and references.
    """
    extra = {} if references is None else {REFERENCE_FILENAME: _tensor_bytes(references.half())}
    archive = _serialize(module, card, extra)
    reloaded = _reload(archive, card, references)
    check_parity(module, reloaded, card, atol=0.0)
    return _write(archive, card, store / card.name)


def parity_inputs(card: ModelCard) -> torch.Tensor | list[torch.Tensor]:
    """Fixed uint8 images shaped as the card's input, from a seeded generator.

    Classifiers get a batch tensor; detectors a list of images of different sizes.
    """
    if card.task == "detect":
        return detection_parity_inputs(card)
    generator = torch.Generator().manual_seed(PARITY_SEED)
    height, width = card.input.tensor_size
    return _random_image((PARITY_BATCH, card.input.channels, height, width), generator)


def check_parity(
    eager: nn.Module,
    scripted: torch.jit.ScriptModule,
    card: ModelCard,
    *,
    atol: float,
    extra_inputs: Sequence[torch.Tensor] = (),
) -> None:
    """Raise ExportError unless both modules give the same outputs on the fixed inputs."""
    if card.task == "detect":
        check_detection_parity(eager, scripted, card, atol=atol, extra_inputs=extra_inputs)
        return
    inputs = parity_inputs(card)
    with torch.inference_mode():
        eager_output, scripted_output = eager(inputs), scripted(inputs)
        expected = (*split_outputs(eager_output, card, len(inputs)), *_maps(eager_output, card))
        actual = (*split_outputs(scripted_output, card, len(inputs)), *_maps(scripted_output, card))
    difference = max(
        _max_difference(want, got)
        for want, got in zip(expected, actual, strict=True)
        if want is not None and got is not None
    )
    if difference > atol:
        raise ExportError(f"scripted outputs differ from eager by {difference:.3g} > {atol}")
    logger.info("export parity: max |eager - scripted| = %.3g", difference)


def _maps(output: object, card: ModelCard) -> tuple[torch.Tensor, ...]:
    """A classifier's activation maps, when its card lists them (compared like the rest)."""
    maps = split_maps(output, card, PARITY_BATCH)
    return () if maps is None else maps


def _random_image(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _max_difference(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """Largest absolute difference between the two modules' outputs."""
    if expected.shape != actual.shape:
        raise ExportError(f"shape mismatch: eager {expected.shape}, scripted {actual.shape}")
    if expected.numel() == 0:
        return 0.0
    return float((expected.double() - actual.double()).abs().max().item())


def detection_parity_inputs(card: ModelCard) -> list[torch.Tensor]:
    """Fixed uint8 CHW images of three different sizes within the card's longer side.

    Smooth seeded noise (a coarse grid upsampled) rather than white noise, so detectors see
    blob-like structure and the comparison covers boxes, not only empty outputs.
    """
    side = card.input.resize_size
    sizes = [(side * 3 // 4, side), (side, side * 2 // 3), (max(8, side // 3), max(8, side // 2))]
    generator = torch.Generator().manual_seed(PARITY_SEED)
    images = []
    for height, width in sizes:
        coarse = torch.rand(1, card.input.channels, 6, 8, generator=generator)
        smooth = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
        images.append((smooth[0] * 255).round().to(torch.uint8))
    return images


def check_detection_parity(
    eager: nn.Module,
    scripted: torch.jit.ScriptModule,
    card: ModelCard,
    *,
    atol: float,
    extra_inputs: Sequence[torch.Tensor] = (),
) -> None:
    """Same boxes, scores and labels from both detectors on images of different sizes.

    Detections are matched as sets, not by position: near-equal scores may come out of the
    final sort in either order, which is not a difference in what the model found.
    """
    inputs = detection_parity_inputs(card) + list(extra_inputs)
    with torch.inference_mode():
        expected = eager(inputs)
        actual = scripted(inputs)
    if len(expected) != len(actual):
        raise ExportError(f"eager gave {len(expected)} results, scripted {len(actual)}")
    side = float(card.input.resize_size)
    difference = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        for key in ("boxes", "scores", "labels"):
            if want[key].shape != got[key].shape:
                raise ExportError(
                    f"image {index}: {key} shape eager {tuple(want[key].shape)}, "
                    f"scripted {tuple(got[key].shape)}"
                )
        if got["labels"].dtype != torch.int64:
            raise ExportError(f"image {index}: labels are {got['labels'].dtype}, not int64")
        difference = max(difference, detection_gap(want, got, side))
    if difference > atol:
        raise ExportError(f"scripted outputs differ from eager by {difference:.3g} > {atol}")
    boxes = sum(len(output["boxes"]) for output in expected)
    logger.info(
        "export parity (detector): %d images, %d boxes, max relative |eager - scripted| = %.3g",
        len(inputs),
        boxes,
        difference,
    )


def detection_gap(
    want: dict[str, torch.Tensor], got: dict[str, torch.Tensor], side: float
) -> float:
    """Largest gap (boxes relative to the input side, scores absolute) after best matching."""
    if want["boxes"].numel() == 0:
        return 0.0
    rows_w = torch.cat([want["boxes"].double() / side, want["scores"].double()[:, None]], dim=1)
    rows_g = torch.cat([got["boxes"].double() / side, got["scores"].double()[:, None]], dim=1)
    gaps = (rows_w[:, None, :] - rows_g[None, :, :]).abs().amax(dim=2)
    gaps[want["labels"][:, None] != got["labels"][None, :]] = float("inf")
    worst = 0.0
    free = torch.ones(len(rows_g), dtype=torch.bool)
    for row in range(len(rows_w)):  # greedy: each eager detection takes its closest free match
        candidates = torch.where(free, gaps[row], torch.full_like(gaps[row], float("inf")))
        best = int(candidates.argmin())
        worst = max(worst, float(candidates[best]))
        free[best] = False
    return worst


def _script(module: nn.Module, freeze: bool) -> torch.jit.ScriptModule:
    with _jit_notices_silenced():
        try:
            scripted = torch.jit.script(module)
        except Exception as error:  # the TorchScript compiler raises many types
            raise ExportError(f"the model cannot be scripted: {error}") from error
        # Freezing folds batch norm into convolutions and inlines weights: faster inference.
        return torch.jit.freeze(scripted) if freeze else scripted


def _serialize(
    scripted: torch.jit.ScriptModule, card: ModelCard, extra: dict[str, bytes] | None = None
) -> bytes:
    buffer = io.BytesIO()
    files: dict[str, str | bytes] = {CARD_FILENAME: card.to_json(), **(extra or {})}
    with _jit_notices_silenced():
        torch.jit.save(scripted, buffer, _extra_files=files)
    return buffer.getvalue()


def _reload(
    archive: bytes, card: ModelCard, references: torch.Tensor | None = None
) -> torch.jit.ScriptModule:
    extra_files: dict[str, str | bytes] = {CARD_FILENAME: "", REFERENCE_FILENAME: ""}
    with _jit_notices_silenced():
        reloaded: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
            io.BytesIO(archive), map_location="cpu", _extra_files=extra_files
        )
    if parse_card(extra_files[CARD_FILENAME]) != card:
        raise ExportError("the card read back from the archive differs from the one written")
    stored = extra_files[REFERENCE_FILENAME]
    if references is not None and not torch.equal(_tensor_from(stored).float(), references):
        raise ExportError("the reference embeddings read back differ from the ones written")
    return reloaded


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return buffer.getvalue()


def _tensor_from(data: str | bytes) -> torch.Tensor:
    raw = data.encode() if isinstance(data, str) else data
    tensor: torch.Tensor = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return tensor


def _write(archive: bytes, card: ModelCard, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sha256 = hashlib.sha256(archive).hexdigest()
    _atomic_write(directory / MODEL_FILENAME, archive)
    _atomic_write(directory / CARD_FILENAME, stored_card_json(card, sha256).encode())
    logger.info("exported %s (%d bytes, sha256 %s)", directory, len(archive), sha256[:12])
    return directory


@contextlib.contextmanager
def _jit_notices_silenced() -> Iterator[None]:
    """TorchScript is our format (docs/architecture.md); its deprecation notices are known."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # FX GraphModules (int8 models) hold empty annotated containers that TorchScript skips.
        warnings.filterwarnings("ignore", "The TorchScript type system doesn't support instance")
        yield


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def framework_versions() -> dict[str, str]:
    """Versions recorded in every card."""
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
