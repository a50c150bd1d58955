"""Uploaded files -> preprocessed tensors, decoded in parallel off the event loop."""

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import torch

from app.errors import InternalError, ServiceError
from app.imaging import ImageLimits, decode_image
from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size, preprocess_image

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file; `error` is set when it was refused before decoding (e.g. too large)."""

    filename: str | None
    data: bytes
    error: ServiceError | None = None


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A model-ready tensor, the upright size of the upload it came from and its bytes' sha256."""

    pixels: torch.Tensor
    width: int
    height: int
    sha256: str
    decode_s: float = 0.0  # decoding and preprocessing, for the metrics


class ImagePreparer:
    """Decodes and preprocesses uploads on a thread pool (Pillow releases the GIL)."""

    def __init__(self, limits: ImageLimits, executor: Executor) -> None:
        self.limits = limits
        self._executor = executor

    async def prepare_all(
        self, uploads: list[Upload], spec: InputSpec
    ) -> list[PreparedImage | ServiceError]:
        """One entry per upload, in order: the tensor, or why that upload cannot be used."""
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(self._executor, self.prepare, upload, spec) for upload in uploads
        ]
        return list(await asyncio.gather(*jobs))

    async def digest_all(self, uploads: list[Upload]) -> list[str]:
        """The sha256 of each upload's bytes, hashed on the pool (hashlib releases the GIL)."""
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor, upload_sha256, upload) for upload in uploads]
        return list(await asyncio.gather(*jobs))

    async def run(self, work: Callable[[], T]) -> T:
        """Run CPU-bound post-processing (e.g. mask encoding) on the pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def prepare(self, upload: Upload, spec: InputSpec) -> PreparedImage | ServiceError:
        """Decode and preprocess one upload (runs in a worker thread)."""
        if upload.error is not None:
            return upload.error
        started = time.perf_counter()
        try:
            decoded = decode_image(upload.data, self.limits, draft_size(spec))
            pixels = preprocess_image(decoded.image, spec)
        except ServiceError as error:
            return error
        except Exception:  # one odd file must not fail its neighbours
            logger.exception("unexpected failure preparing %r", upload.filename)
            return InternalError("This image could not be processed.", filename=upload.filename)
        return PreparedImage(
            pixels=pixels,
            width=decoded.width,
            height=decoded.height,
            sha256=upload_sha256(upload),
            decode_s=time.perf_counter() - started,
        )


def upload_sha256(upload: Upload) -> str:
    """Hex sha256 of the uploaded bytes (as received, before any decoding)."""
    return hashlib.sha256(upload.data).hexdigest()
