"""Images to upload: from paths, folders or bytes; split into requests the service accepts."""

import mimetypes
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

ImageSource = str | Path | bytes


@dataclass(frozen=True, kw_only=True)
class ImageFile:
    """One upload: its name (for the answer's `filename`), bytes and media type."""

    name: str
    data: bytes
    content_type: str


def image_file(source: ImageSource, index: int = 0) -> ImageFile:
    """An upload from a path or raw bytes (named `image-<index>`)."""
    if isinstance(source, bytes):
        return ImageFile(
            name=f"image-{index}", data=source, content_type="application/octet-stream"
        )
    path = Path(source)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return ImageFile(name=path.name, data=path.read_bytes(), content_type=content_type)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (recursively, sorted)."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(item)
    return found


def chunks(files: Sequence[ImageFile], size: int) -> Iterator[tuple[int, Sequence[ImageFile]]]:
    """(offset, files) runs of at most `size`: one request each."""
    for offset in range(0, len(files), size):
        yield offset, files[offset : offset + size]


def multipart(files: Sequence[ImageFile]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """httpx's `files=` for the service's repeated `image` field."""
    return [("image", (file.name, file.data, file.content_type)) for file in files]
