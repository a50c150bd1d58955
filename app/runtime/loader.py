"""Load one model folder: verify its hash and card, then torch.jit.load it (the only place)."""

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision  # noqa: F401 - registers torchvision::nms etc., which detectors call
from pydantic import ValidationError

from app.errors import ModelLoadError
from app.runtime.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    REFERENCE_FILENAME,
    ModelCard,
    StoredCard,
    parse_card,
    parse_stored_card,
)
from app.runtime.encryption import (
    ENCRYPTED_FILENAME,
    EncryptionError,
    ModelKey,
    decrypt_archive,
)
from app.runtime.signing import NOT_CHECKED, SignatureCheck, TrustedKey, verify_model
from app.runtime.store import check_folder_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified TorchScript module on its device, with its card and archive hash."""

    card: ModelCard
    module: torch.jit.ScriptModule
    sha256: str
    device: torch.device
    # The open-set reference embeddings [M, D] on the device (kNN method), else None.
    references: torch.Tensor | None = None
    signature: SignatureCheck = NOT_CHECKED
    # The half type the forward runs in under autocast (runtime/precision.py), else None.
    autocast_dtype: torch.dtype | None = None


def load_model(
    directory: Path,
    device: torch.device,
    trusted_keys: dict[str, TrustedKey] | None = None,
    model_keys: dict[str, ModelKey] | None = None,
) -> LoadedModel:
    """Load `directory/model.pt`, refusing it when card.json's hash or card disagree.

    With trusted keys, the folder's signature must verify too (unsigned, unknown key and
    altered are refused with that reason). An archive stored encrypted (`model.pt.enc`) is
    decrypted in memory with `model_keys`; the plaintext never touches the disk.
    """
    model_path = directory / MODEL_FILENAME
    if not model_path.is_file() and not (directory / ENCRYPTED_FILENAME).is_file():
        raise ModelLoadError(f"{directory}: no {MODEL_FILENAME} in the model folder")
    card_bytes, stored = _read_stored_card(directory)
    # Hash, verify and load the same bytes, so no file can change between check and load.
    archive = _read_archive(directory, stored, model_keys or {})
    sha256 = hashlib.sha256(archive).hexdigest()
    signature = NOT_CHECKED
    if trusted_keys:
        signature = verify_model(directory, sha256, card_bytes, trusted_keys)
    if stored.sha256 != sha256:
        source = (
            f"{directory / ENCRYPTED_FILENAME} (decrypted)" if stored.encryption else model_path
        )
        raise ModelLoadError(
            f"{source}: sha256 is {sha256} but {CARD_FILENAME} says {stored.sha256}; "
            "the archive was modified or replaced after export"
        )
    module, embedded, references = _load_archive(model_path, archive, device)
    _check_cards_agree(directory, stored, embedded)
    _check_precision(model_path, embedded, module, device)
    check_folder_name(directory, embedded)  # models/<name>/ or models/<name>@<version>/
    return LoadedModel(
        card=embedded,
        module=module,
        sha256=sha256,
        device=device,
        references=references,
        signature=signature,
    )


def discover_model_dirs(model_dir: Path) -> list[Path]:
    """Every sub-folder of the store that holds a model archive (plain or encrypted), sorted."""
    if not model_dir.is_dir():
        raise ModelLoadError(f"the model store {model_dir} does not exist")
    archives = [*model_dir.glob(f"*/{MODEL_FILENAME}"), *model_dir.glob(f"*/{ENCRYPTED_FILENAME}")]
    return sorted({path.parent for path in archives})


def _read_archive(directory: Path, stored: StoredCard, model_keys: dict[str, ModelKey]) -> bytes:
    """The plaintext archive: model.pt as it is, or model.pt.enc decrypted in memory."""
    plain, encrypted = directory / MODEL_FILENAME, directory / ENCRYPTED_FILENAME
    if plain.is_file() and encrypted.is_file():
        raise ModelLoadError(
            f"{directory}: holds both {MODEL_FILENAME} and {ENCRYPTED_FILENAME}; remove the one "
            f"{CARD_FILENAME} does not describe"
        )
    if stored.encryption is None:
        if encrypted.is_file():
            raise ModelLoadError(
                f"{directory}: {CARD_FILENAME} records no encryption, yet the folder holds "
                f"{ENCRYPTED_FILENAME} only"
            )
        return plain.read_bytes()
    expected = stored.encryption.key_id
    if not encrypted.is_file():
        raise ModelLoadError(
            f"{directory}: {CARD_FILENAME} records an archive encrypted with key {expected}, "
            f"but there is no {ENCRYPTED_FILENAME}"
        )
    try:
        archive, key = decrypt_archive(encrypted.read_bytes(), model_keys)
    except EncryptionError as error:
        raise ModelLoadError(f"{encrypted}: {error}") from None
    if key.key_id != expected:
        raise ModelLoadError(
            f"{encrypted}: encrypted with key {key.key_id}, but {CARD_FILENAME} records {expected}"
        )
    logger.info("decrypted %s in memory with key %s (%s)", encrypted, key.name, key.key_id)
    return archive


def _read_stored_card(directory: Path) -> tuple[bytes, StoredCard]:
    """card.json's bytes (what a signature covers) and its card with the archive's sha256."""
    card_path = directory / CARD_FILENAME
    if not card_path.is_file():
        raise ModelLoadError(
            f"{directory}: no {CARD_FILENAME} beside {MODEL_FILENAME}; without it the archive's "
            "hash cannot be checked (export writes both)"
        )
    data = card_path.read_bytes()
    try:
        return data, parse_stored_card(data)
    except ValidationError as error:
        raise ModelLoadError(f"{card_path} is not a valid card: {error}") from error


def _load_archive(
    model_path: Path, archive: bytes, device: torch.device
) -> tuple[torch.jit.ScriptModule, ModelCard, torch.Tensor | None]:
    extra_files = {CARD_FILENAME: "", REFERENCE_FILENAME: ""}
    try:
        with warnings.catch_warnings():
            # TorchScript is our format (docs/architecture.md); its deprecation notice is known.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(archive), map_location=device, _extra_files=extra_files
            )
    except Exception as error:  # torch raises RuntimeError and others on bad archives
        raise ModelLoadError(
            f"{model_path} is not a loadable TorchScript archive: {error}"
        ) from error
    if not extra_files[CARD_FILENAME]:
        raise ModelLoadError(f"{model_path} has no embedded {CARD_FILENAME}")
    try:
        card = parse_card(extra_files[CARD_FILENAME])
    except ValidationError as error:
        raise ModelLoadError(f"{model_path}: the embedded card is invalid: {error}") from error
    module.eval()
    return module, card, _references(model_path, card, extra_files[REFERENCE_FILENAME], device)


def _references(
    model_path: Path, card: ModelCard, data: str | bytes, device: torch.device
) -> torch.Tensor | None:
    """The kNN reference embeddings the card's open-set method needs, checked against the card."""
    open_set = card.calibration.open_set if card.calibration else None
    if open_set is None or open_set.method != "knn":
        return None
    if not data:
        raise ModelLoadError(f"{model_path}: the card's knn method needs {REFERENCE_FILENAME}")
    raw = data.encode() if isinstance(data, str) else data
    try:
        references = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as error:  # torch.load raises several types on corrupt input
        raise ModelLoadError(
            f"{model_path}: {REFERENCE_FILENAME} is unreadable: {error}"
        ) from error
    expected = (open_set.references, card.embedding_dim)
    if not isinstance(references, torch.Tensor) or tuple(references.shape) != expected:
        raise ModelLoadError(f"{model_path}: {REFERENCE_FILENAME} is not a {expected} tensor")
    return references.float()


def _check_precision(
    model_path: Path, card: ModelCard, module: torch.jit.ScriptModule, device: torch.device
) -> None:
    """The card's precision must be what the archive runs: quantized kernels exactly for int8."""
    quantized = "quantized::" in str(module.inlined_graph)
    if quantized != (card.precision == "int8"):
        runs = "quantized (int8) kernels" if quantized else "no quantized kernels"
        raise ModelLoadError(
            f"{model_path}: the card says {card.precision}, the archive runs {runs}"
        )
    if quantized and device.type != "cpu":
        raise ModelLoadError(f"{model_path}: int8 models run on the CPU only, not {device}")


def _check_cards_agree(directory: Path, stored: StoredCard, embedded: ModelCard) -> None:
    beside = stored.card()
    if beside == embedded:
        return
    differing = sorted(
        field
        for field in ModelCard.model_fields
        if getattr(beside, field) != getattr(embedded, field)
    )
    raise ModelLoadError(
        f"{directory}: {CARD_FILENAME} disagrees with the card embedded in {MODEL_FILENAME} "
        f"on {', '.join(differing)}"
    )
