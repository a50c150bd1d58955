"""Image file checks every task's dataset check uses: readable, within limits, duplicates."""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ServiceError
from app.imaging import ImageLimits, decode_image

logger = logging.getLogger(__name__)


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


# Training reads trusted local files: only Pillow's own decompression-bomb guard applies.
TRAINING_LIMITS = ImageLimits(max_bytes=1 << 30, max_pixels=178_956_970, min_side=1)


_EXAMPLES = 20


class DatasetError(ValueError):
    """The data cannot be trained on; the message says why and what to do about it."""


@dataclass(frozen=True)
class InspectedFile:
    """What decoding one file found: its hash and upright size, or why it cannot be used."""

    digest: str = ""
    width: int = 0
    height: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class Duplicates:
    """Groups of byte-identical images: how many, how many span splits, a few named."""

    groups: int = 0
    crossing: int = 0
    examples: list[list[str]] = field(default_factory=list)


def inspect_files(paths: Sequence[Path], workers: int = 4) -> dict[Path, InspectedFile]:
    """Decode every file once, in a thread pool (Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return dict(zip(paths, pool.map(inspect_file, paths), strict=True))


def inspect_file(path: Path) -> InspectedFile:
    """Hash and upright size of a readable image; the reason for any other file."""
    try:
        data = path.read_bytes()
        decoded = decode_image(data, TRAINING_LIMITS)
    except ServiceError as error:
        return InspectedFile(problem=error.message)
    except FileNotFoundError:
        return InspectedFile(problem="missing: no such file")
    except OSError as error:
        return InspectedFile(problem=f"cannot read: {error}")
    return InspectedFile(hashlib.sha1(data).hexdigest(), decoded.width, decoded.height)


def find_duplicates(
    digests: Mapping[str, Sequence[str]], describe: Callable[[str, int], str]
) -> Duplicates:
    """Group byte-identical images by content hash (digests: split -> hash per image)."""
    by_digest: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for split, hashes in digests.items():
        for index, digest in enumerate(hashes):
            by_digest[digest].append((split, index))
    groups = [members for members in by_digest.values() if len(members) > 1]
    examples = [
        [f"{split}:{describe(split, index)}" for split, index in members]
        for members in groups[:_EXAMPLES]
    ]
    crossing = sum(1 for members in groups if len({split for split, _ in members}) > 1)
    return Duplicates(len(groups), crossing, examples)


def unreadable_lines(corrupt: Sequence[tuple[str, str]]) -> list[str]:
    """Report lines for files that could not be decoded (the first few named)."""
    if not corrupt:
        return []
    lines = [f"{len(corrupt)} unreadable file(s), skipped:"]
    return lines + [f"  {path}: {reason}" for path, reason in corrupt[:_EXAMPLES]]


def duplicate_lines(duplicates: Duplicates) -> list[str]:
    """Report lines for byte-identical images (the first few groups named)."""
    if not duplicates.groups:
        return []
    lines = [
        f"{duplicates.groups} group(s) of byte-identical images, "
        f"{duplicates.crossing} spanning splits (leakage into val/test):"
    ]
    return lines + [f"  {' = '.join(group)}" for group in duplicates.examples[:5]]
