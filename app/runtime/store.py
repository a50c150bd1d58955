"""The model store's layout: folders, `name@version` references, version order, aliases file.

A model folder is `models/<name>/` (one version of a name) or `models/<name>@<version>/` (one of
several versions side by side); either way it holds `model.pt` and `card.json` and its card
must carry that name (and that version). `models/aliases.json` (`{"name": "version"}`) pins
which version a bare `name` means; without a pin it is the highest version served.
"""

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.runtime.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from app.runtime.signing import SIGNATURE_FILENAME

VERSION_SEPARATOR = "@"
ALIASES_FILENAME = "aliases.json"
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelRef:
    """What a request names: `name` (its default version) or `name@version` (that one)."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelRef":
        """`name` or `name@version` (names cannot hold `@`, so the first one splits)."""
        name, separator, version = text.partition(VERSION_SEPARATOR)
        return cls(name=name, version=version if separator else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def served_ref(card: ModelCard) -> str:
    """`name@version` of a card: how one version is addressed."""
    return str(ModelRef(name=card.name, version=card.version))


def check_folder_name(directory: Path, card: ModelCard) -> None:
    """Refuse a folder whose name is neither the card's name nor `name@version` of its card."""
    folder = ModelRef.parse(directory.name)
    if folder.name != card.name:
        raise ModelLoadError(
            f"{directory}: the folder name must be the card's name {card.name!r} "
            f"(or {served_ref(card)!r})"
        )
    if folder.version is not None and folder.version != card.version:
        raise ModelLoadError(
            f"{directory}: the folder says version {folder.version!r} but the card says "
            f"{card.version!r}"
        )


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions naturally: numbers as numbers (1.10 after 1.9), text as text."""
    parts = [part for part in _NUMBER.split(version) if part]
    return tuple((1, int(part)) if part.isdigit() else (0, part) for part in parts)


def folder_fingerprint(directory: Path) -> str:
    """sha256 over the files that decide what a folder serves (archive, card, signature)."""
    digest = hashlib.sha256()
    for filename in (MODEL_FILENAME, CARD_FILENAME, SIGNATURE_FILENAME):
        path = directory / filename
        digest.update(filename.encode())
        try:
            with path.open("rb") as stream:
                digest.update(hashlib.file_digest(stream, "sha256").digest())
        except FileNotFoundError:
            digest.update(b"absent")
    return digest.hexdigest()


def read_aliases(model_dir: Path) -> dict[str, str]:
    """The pins of `models/aliases.json` (none when absent); ModelLoadError when malformed."""
    path = model_dir / ALIASES_FILENAME
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: unreadable ({error})") from error
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise ModelLoadError(f'{path}: must be a JSON object of {{"name": "version"}}')
    return dict(data)


def write_aliases(model_dir: Path, aliases: dict[str, str]) -> Path:
    """Replace `models/aliases.json` atomically (OSError when the store is read-only)."""
    path = model_dir / ALIASES_FILENAME
    text = json.dumps(dict(sorted(aliases.items())), indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=model_dir, prefix=".aliases-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        Path(temporary).replace(path)  # readers see the old file or the new one, never half
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
