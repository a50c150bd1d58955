"""`Client` and `AsyncClient`: the service's routes as typed calls, retrying 503s politely.

Both share the request building (`_Routes`), the chunking (`batches.Batches`) and the retry
rule (`RetryPolicy`); only the waiting differs.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from visionserve_client.batches import Batches
from visionserve_client.errors import VisionServeError, error_from
from visionserve_client.files import ImageFile, ImageSource, image_file, multipart
from visionserve_client.models import (
    AddReferencesResponse,
    ClassifyResponse,
    DeleteProductResponse,
    DetectResponse,
    GalleriesResponse,
    GalleryResponse,
    MatchResponse,
    ModelsResponse,
    SegmentResponse,
)

DEFAULT_URL = "http://localhost:8000"
Answer = TypeVar("Answer", bound=BaseModel)
Chunked = TypeVar(
    "Chunked",
    ClassifyResponse,
    DetectResponse,
    SegmentResponse,
    MatchResponse,
    AddReferencesResponse,
)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When to try a request again: a 503 (overloaded, not ready) or a failed connection."""

    attempts: int = 4  # tries per request, the first included
    max_wait_s: float = 10.0  # the longest wait, even when Retry-After asks for more
    backoff_s: float = 0.5  # the first wait when no Retry-After is given; doubled each try

    def wait_s(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None: give up and report."""
        if attempt + 1 >= self.attempts:
            return None
        if response is not None and response.status_code != 503:
            return None
        retry_after = response.headers.get("retry-after") if response is not None else None
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        if wait is None:
            wait = self.backoff_s * 2**attempt
        return min(wait, self.max_wait_s)


@dataclass(frozen=True, kw_only=True)
class _Request:
    """One HTTP request, as both clients send it."""

    method: str
    path: str
    params: dict[str, Any]
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    json: dict[str, Any] | None = None


class _Routes:
    """What both clients know: the routes, their parameters, and how images are chunked."""

    def __init__(self, max_images_per_request: int) -> None:
        self.max_images_per_request = max_images_per_request

    @staticmethod
    def files(images: Sequence[ImageSource]) -> list[ImageFile]:
        if isinstance(images, (str, bytes)):
            raise TypeError("pass a list of images (paths or bytes), not one")
        return [image_file(source, index) for index, source in enumerate(images)]

    @staticmethod
    def post(path: str, files: Sequence[ImageFile], **params: Any) -> _Request:
        given = {name: value for name, value in params.items() if value is not None}
        return _Request(method="POST", path=path, params=given, files=multipart(files))

    @staticmethod
    def create_gallery_request(name: str, model: str, threshold: float | None) -> _Request:
        body: dict[str, Any] = {"model": model}
        if threshold is not None:
            body["threshold"] = threshold
        return _Request(method="PUT", path=_gallery_path(name), params={}, json=body)


def _gallery_path(name: str, *parts: str) -> str:
    """/galleries/NAME[/PART...], each segment escaped (product ids are the caller's)."""
    return "/".join(["/galleries", *(quote(segment, safe="") for segment in (name, *parts))])


def _references_path(gallery: str, product_id: str) -> str:
    return _gallery_path(gallery, "products", product_id, "references")


def _get(path: str) -> _Request:
    return _Request(method="GET", path=path, params={})


def _deleted(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_from(response)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"x-api-key": api_key} if api_key else {}


def _parsed(response: httpx.Response, answer: type[Answer]) -> Answer:
    if response.is_success:
        return answer.model_validate_json(response.content)
    raise error_from(response)


class Client(_Routes):
    """A synchronous client; use it in a `with` block, or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        max_images_per_request: int = 32,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(max_images_per_request)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    def classify(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        top_k: int | None = None,
        min_probability: float | None = None,
    ) -> ClassifyResponse:
        """Labels (and decisions, for calibrated models) for every image, in order."""
        params = {"model": model, "top_k": top_k, "min_probability": min_probability}
        return self._chunked("/classify", images, ClassifyResponse, params)

    def detect(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> DetectResponse:
        """Boxes for every image, in the upload's upright pixels, in order."""
        params = {
            "model": model,
            "score_threshold": score_threshold,
            "max_detections": max_detections,
        }
        return self._chunked("/detect", images, DetectResponse, params)

    def segment(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        mask_format: Literal["png", "rle"] = "png",
    ) -> SegmentResponse:
        """Classes present and a mask the size of each upright upload, in order."""
        params = {"model": model, "format": mask_format}
        return self._chunked("/segment", images, SegmentResponse, params)

    def create_gallery(
        self, name: str, *, model: str, threshold: float | None = None
    ) -> GalleryResponse:
        """Create a gallery bound to an embedding model (the same one again is a no-op)."""
        request = self.create_gallery_request(name, model, threshold)
        return _parsed(self._send(request), GalleryResponse)

    def galleries(self) -> GalleriesResponse:
        """Every gallery with its model, threshold and size."""
        return _parsed(self._send(_get("/galleries")), GalleriesResponse)

    def gallery(self, name: str) -> GalleryResponse:
        """One gallery and its products with their reference counts."""
        return _parsed(self._send(_get(_gallery_path(name))), GalleryResponse)

    def delete_gallery(self, name: str) -> None:
        """Remove a gallery and all its products."""
        _deleted(self._send(_Request(method="DELETE", path=_gallery_path(name), params={})))

    def add_references(
        self, gallery: str, product_id: str, images: Sequence[ImageSource]
    ) -> AddReferencesResponse:
        """Add reference photos of a product. Each request stores its usable photos together;
        more photos than one request takes are sent as several."""
        path = _references_path(gallery, product_id)
        return self._chunked(path, images, AddReferencesResponse, {})

    def delete_product(self, gallery: str, product_id: str) -> DeleteProductResponse:
        """Remove a product and its reference photos."""
        path = _gallery_path(gallery, "products", product_id)
        request = _Request(method="DELETE", path=path, params={})
        return _parsed(self._send(request), DeleteProductResponse)

    def match(
        self,
        gallery: str,
        images: Sequence[ImageSource],
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        explain: bool | None = None,
    ) -> MatchResponse:
        """The gallery's most similar products for every image, with a decision, in order."""
        params = {"top_k": top_k, "threshold": threshold, "explain": explain}
        return self._chunked(_gallery_path(gallery, "match"), images, MatchResponse, params)

    def models(self) -> ModelsResponse:
        """The served models' cards, and the folders the service refused."""
        return _parsed(self._send(_get("/models")), ModelsResponse)

    def ready(self) -> bool:
        """Whether every configured model is loaded and warm (GET /readyz)."""
        return self._http.get("/readyz").status_code == 200

    def _chunked(
        self,
        path: str,
        images: Sequence[ImageSource],
        answer: type[Chunked],
        params: dict[str, Any],
    ) -> Chunked:
        batches: Batches[Chunked] = Batches(self.files(images), self.max_images_per_request)
        while chunk := batches.next_chunk():
            try:
                batches.record_answer(_parsed(self._send(self.post(path, chunk, **params)), answer))
            except VisionServeError as error:
                batches.record_error(error)
        return batches.response()

    def _send(self, request: _Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    request.method,
                    request.path,
                    params=request.params,
                    files=request.files,
                    json=request.json,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError):  # nothing was answered
                wait = self.retry.wait_s(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self.retry.wait_s(attempt, response)
                if wait is None:
                    return response
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient(_Routes):
    """The same calls for asyncio; use it in an `async with` block, or await `aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        max_images_per_request: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(max_images_per_request)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    async def classify(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        top_k: int | None = None,
        min_probability: float | None = None,
    ) -> ClassifyResponse:
        """Labels (and decisions, for calibrated models) for every image, in order."""
        params = {"model": model, "top_k": top_k, "min_probability": min_probability}
        return await self._chunked("/classify", images, ClassifyResponse, params)

    async def detect(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> DetectResponse:
        """Boxes for every image, in the upload's upright pixels, in order."""
        params = {
            "model": model,
            "score_threshold": score_threshold,
            "max_detections": max_detections,
        }
        return await self._chunked("/detect", images, DetectResponse, params)

    async def segment(
        self,
        images: Sequence[ImageSource],
        *,
        model: str | None = None,
        mask_format: Literal["png", "rle"] = "png",
    ) -> SegmentResponse:
        """Classes present and a mask the size of each upright upload, in order."""
        params = {"model": model, "format": mask_format}
        return await self._chunked("/segment", images, SegmentResponse, params)

    async def create_gallery(
        self, name: str, *, model: str, threshold: float | None = None
    ) -> GalleryResponse:
        """Create a gallery bound to an embedding model (the same one again is a no-op)."""
        request = self.create_gallery_request(name, model, threshold)
        return _parsed(await self._send(request), GalleryResponse)

    async def galleries(self) -> GalleriesResponse:
        """Every gallery with its model, threshold and size."""
        return _parsed(await self._send(_get("/galleries")), GalleriesResponse)

    async def gallery(self, name: str) -> GalleryResponse:
        """One gallery and its products with their reference counts."""
        return _parsed(await self._send(_get(_gallery_path(name))), GalleryResponse)

    async def delete_gallery(self, name: str) -> None:
        """Remove a gallery and all its products."""
        _deleted(await self._send(_Request(method="DELETE", path=_gallery_path(name), params={})))

    async def add_references(
        self, gallery: str, product_id: str, images: Sequence[ImageSource]
    ) -> AddReferencesResponse:
        """Add reference photos of a product. Each request stores its usable photos together;
        more photos than one request takes are sent as several."""
        path = _references_path(gallery, product_id)
        return await self._chunked(path, images, AddReferencesResponse, {})

    async def delete_product(self, gallery: str, product_id: str) -> DeleteProductResponse:
        """Remove a product and its reference photos."""
        path = _gallery_path(gallery, "products", product_id)
        request = _Request(method="DELETE", path=path, params={})
        return _parsed(await self._send(request), DeleteProductResponse)

    async def match(
        self,
        gallery: str,
        images: Sequence[ImageSource],
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        explain: bool | None = None,
    ) -> MatchResponse:
        """The gallery's most similar products for every image, with a decision, in order."""
        params = {"top_k": top_k, "threshold": threshold, "explain": explain}
        return await self._chunked(_gallery_path(gallery, "match"), images, MatchResponse, params)

    async def models(self) -> ModelsResponse:
        """The served models' cards, and the folders the service refused."""
        return _parsed(await self._send(_get("/models")), ModelsResponse)

    async def ready(self) -> bool:
        """Whether every configured model is loaded and warm (GET /readyz)."""
        return (await self._http.get("/readyz")).status_code == 200

    async def _chunked(
        self,
        path: str,
        images: Sequence[ImageSource],
        answer: type[Chunked],
        params: dict[str, Any],
    ) -> Chunked:
        batches: Batches[Chunked] = Batches(self.files(images), self.max_images_per_request)
        while chunk := batches.next_chunk():
            try:
                batches.record_answer(
                    _parsed(await self._send(self.post(path, chunk, **params)), answer)
                )
            except VisionServeError as error:
                batches.record_error(error)
        return batches.response()

    async def _send(self, request: _Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    request.method,
                    request.path,
                    params=request.params,
                    files=request.files,
                    json=request.json,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError):  # nothing was answered
                wait = self.retry.wait_s(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self.retry.wait_s(attempt, response)
                if wait is None:
                    return response
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
