"""Uploaded files -> preprocessed tensors, decoded in parallel off the event loop."""

import asyncio
import hashlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

from app.errors import InternalError, ServiceError
from app.galleries.phash import perceptual_hash
from app.gpu_imaging import GpuJpegDecoder
from app.imaging import ImageLimits, decode_image
from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size, preprocess_image

logger = logging.getLogger(__name__)


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
    phash: int | None = None  # the perceptual hash, when the caller asked for one


class ImagePreparer:
    """Decodes and preprocesses uploads on a thread pool (Pillow releases the GIL).

    With a GPU decoder, a request's JPEGs are first decoded together on the GPU; whatever it
    does not take (other formats, errors) goes through the CPU path as always.
    """

    def __init__(
        self, limits: ImageLimits, executor: Executor, gpu: GpuJpegDecoder | None = None
    ) -> None:
        self.limits = limits
        self._executor = executor
        self._gpu = gpu

    async def prepare_all(
        self, uploads: list[Upload], spec: InputSpec, *, fingerprint: bool = False
    ) -> list[PreparedImage | ServiceError]:
        """One entry per upload, in order: the tensor, or why that upload cannot be used."""
        loop = asyncio.get_running_loop()
        # A perceptual hash needs the decoded image on the CPU: galleries stay on the CPU path.
        gpu = None if fingerprint else self._gpu
        on_gpu: list[PreparedImage | None] = [None] * len(uploads)
        if gpu is not None:
            on_gpu = await loop.run_in_executor(
                self._executor, self.prepare_on_gpu, gpu, uploads, spec
            )
        left = [index for index, prepared in enumerate(on_gpu) if prepared is None]
        jobs = [
            loop.run_in_executor(self._executor, self.prepare, uploads[index], spec, fingerprint)
            for index in left
        ]
        on_cpu = dict(zip(left, await asyncio.gather(*jobs), strict=True))
        return [
            on_cpu[index] if prepared is None else prepared for index, prepared in enumerate(on_gpu)
        ]

    def prepare_on_gpu(
        self, gpu: GpuJpegDecoder, uploads: list[Upload], spec: InputSpec
    ) -> list[PreparedImage | None]:
        """The uploads the GPU decoder takes, prepared; None for the others (a worker thread)."""
        started = time.perf_counter()
        usable = [index for index, upload in enumerate(uploads) if upload.error is None]
        decoded = gpu.prepare_many([uploads[index].data for index in usable], spec)
        each_s = (time.perf_counter() - started) / max(1, len(usable))
        prepared: list[PreparedImage | None] = [None] * len(uploads)
        for index, image in zip(usable, decoded, strict=True):
            if image is not None:
                prepared[index] = PreparedImage(
                    pixels=image.pixels,
                    width=image.width,
                    height=image.height,
                    sha256=upload_sha256(uploads[index]),
                    decode_s=each_s,
                )
        return prepared

    async def digest_all(self, uploads: list[Upload]) -> list[str]:
        """The sha256 of each upload's bytes, hashed on the pool (hashlib releases the GIL)."""
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor, upload_sha256, upload) for upload in uploads]
        return list(await asyncio.gather(*jobs))

    def prepare(
        self, upload: Upload, spec: InputSpec, fingerprint: bool = False
    ) -> PreparedImage | ServiceError:
        """Decode and preprocess one upload (runs in a worker thread); hash it if `fingerprint`."""
        if upload.error is not None:
            return upload.error
        started = time.perf_counter()
        try:
            decoded = decode_image(upload.data, self.limits, draft_size(spec))
            pixels = preprocess_image(decoded.image, spec)
            phash = perceptual_hash(decoded.image) if fingerprint else None
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
            phash=phash,
        )


def upload_sha256(upload: Upload) -> str:
    """Hex sha256 of the uploaded bytes (as received, before any decoding)."""
    return hashlib.sha256(upload.data).hexdigest()
