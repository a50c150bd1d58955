"""Ownership watermark: a secret key, and the trigger set (images, target labels) derived from it.

The scheme is the backdoor-as-watermark of Adi et al. (USENIX Security 2018, "Turning your
weakness into a strength"): out-of-distribution images, each with a label drawn uniformly from
the classes, are learned along with the data. A model that never saw them labels them right at
chance (1 in C); the owner, holding the key, regenerates them and counts.

Every value comes from SHAKE-256 over the key, a domain string and the trigger's index, so the
set is fixed by the key alone (no library's random stream whose algorithm may change between
versions), the first n triggers of a larger set are the set of n, and the key id reveals nothing
about the triggers.
"""

import hashlib
import hmac
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.runtime.card import InputSpec
from training.classification.images import ArrayImages
from training.core.config import ConfigError

logger = logging.getLogger(__name__)

SCHEME = "adi-trigger-set-v1"
DEFAULT_TRIGGERS = 100
KEY_BYTES = 32
# Each trigger is a coarse grid of random colours, scaled up to the model's input: far from any
# photo, and still the same pattern after a copy is re-exported at another input size.
GRID = 8
_DOMAIN = b"visionserve/watermark/" + SCHEME.encode() + b"/"
_HEADER = "# visionserve watermark key: keep it secret; it proves ownership of watermarked models"
_HEX = re.compile(r"^[0-9a-f]{64}$")


class WatermarkKeyError(ConfigError):
    """A key file that is missing, malformed, or would overwrite another."""


@dataclass(frozen=True)
class WatermarkKey:
    """A 256-bit secret; its repr never shows it."""

    secret: bytes

    def __repr__(self) -> str:
        return f"WatermarkKey(id={self.key_id})"

    @property
    def key_id(self) -> str:
        """A public name for the key (a keyed hash, so it says nothing about the triggers)."""
        return hmac.new(self.secret, _DOMAIN + b"key-id", hashlib.sha256).hexdigest()[:16]


def generate_key(path: Path) -> WatermarkKey:
    """Write a new random key to `path` (mode 0600); an existing file is never replaced."""
    key = WatermarkKey(os.urandom(KEY_BYTES))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise WatermarkKeyError(f"{path} exists; a key is never overwritten") from error
    with os.fdopen(descriptor, "w") as stream:
        # The umask can only narrow 0600, but a file system may have widened it.
        os.fchmod(stream.fileno(), 0o600)
        stream.write(f"{_HEADER}\n{key.secret.hex()}\n")
    return key


def read_key(path: Path) -> WatermarkKey:
    """The key in `path` (one line of 64 hex digits; `#` lines are comments)."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise WatermarkKeyError(f"watermark key {path}: no such file") from error
    except (OSError, UnicodeDecodeError) as error:
        raise WatermarkKeyError(f"watermark key {path} is unreadable: {error}") from error
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    if len(lines) != 1 or not _HEX.match(lines[0]):
        raise WatermarkKeyError(
            f"{path} is not a watermark key (one line of 64 hex digits, as written by "
            "`python -m training watermark keygen`)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("watermark key %s is readable by others; chmod 600 it", path)
    return WatermarkKey(bytes.fromhex(lines[0]))


@dataclass(frozen=True, kw_only=True)
class TriggerSet:
    """The key's triggers rendered for one model input, as labelled images."""

    key_id: str
    classes: int
    images: ArrayImages  # uint8 images at the input's resize size, in its colour mode

    def __len__(self) -> int:
        return len(self.images)


def trigger_set(key: WatermarkKey, count: int, classes: int, spec: InputSpec) -> TriggerSet:
    """`count` trigger images for a model with this input and number of classes."""
    if count < 1:
        raise ConfigError("the watermark needs at least one trigger image")
    if classes < 2:
        raise ConfigError("a watermark needs at least two classes to choose labels from")
    pictures = [render_trigger(key, index, spec) for index in range(count)]
    labels = [trigger_label(key, index, classes) for index in range(count)]
    images = ArrayImages(np.stack(pictures), labels, "watermark-trigger", np.arange(count))
    return TriggerSet(key_id=key.key_id, classes=classes, images=images)


def render_trigger(key: WatermarkKey, index: int, spec: InputSpec) -> np.ndarray:
    """Trigger `index`: the key's colour grid scaled (bicubic) to the input's resize size.

    Rendered at the size the service resizes to, it passes the service's preprocessing as it is
    (a crop takes its centre), in training and in `watermark verify` alike.
    """
    grid = np.frombuffer(_stream(key, b"image", index, GRID * GRID * 3), dtype=np.uint8)
    picture = Image.fromarray(grid.reshape(GRID, GRID, 3).copy(), "RGB")
    side = spec.resize_size
    scaled = picture.resize((side, side), Image.Resampling.BICUBIC).convert(spec.color_mode)
    return np.asarray(scaled, dtype=np.uint8)


def trigger_label(key: WatermarkKey, index: int, classes: int) -> int:
    """Trigger `index`'s target class, uniform over `classes` (rejection sampling, no bias)."""
    limit = (1 << 64) - (1 << 64) % classes
    data = _stream(key, b"label", index, 8 * 64)
    for offset in range(0, len(data), 8):
        value = int.from_bytes(data[offset : offset + 8], "big")
        if value < limit:
            return value % classes
    # 64 rejections in a row happen with probability below 2^-64 for any class count.
    raise RuntimeError("trigger label sampling exhausted its stream")


def _stream(key: WatermarkKey, purpose: bytes, index: int, length: int) -> bytes:
    # The key first and fixed-length fields: one unambiguous input per (purpose, index).
    shake = hashlib.shake_256(key.secret + _DOMAIN + purpose + b"/" + index.to_bytes(8, "big"))
    return shake.digest(length)
