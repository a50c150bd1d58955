"""Many images as several requests: the chunks to send, and their answers as one response.

Sans-IO, so the sync and async clients share it: `next_chunk()` gives the images of the next
request, `record_*()` takes what it got. The chunk size follows the service's limit when a
request is refused as too large (`too_many_images` names it).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from visionserve_client.errors import VisionServeError
from visionserve_client.files import ImageFile
from visionserve_client.models import (
    AddReferencesResponse,
    ClassifyResponse,
    DetectResponse,
    ErrorBody,
    MatchResponse,
    SegmentResponse,
)

Response = TypeVar(
    "Response",
    ClassifyResponse,
    DetectResponse,
    SegmentResponse,
    MatchResponse,
    AddReferencesResponse,
)


@dataclass
class Batches(Generic[Response]):
    """The images of one call, sent in chunks; the answers gathered in upload order."""

    files: Sequence[ImageFile]
    size: int
    _offset: int = 0
    _answers: list[Response] = field(default_factory=list)
    _failed: list[tuple[int, ImageFile, VisionServeError]] = field(default_factory=list)

    def next_chunk(self) -> Sequence[ImageFile]:
        """The images of the next request; empty when all are answered."""
        return self.files[self._offset : self._offset + self.size]

    def record_answer(self, answer: Response) -> None:
        """A chunk's answer; its results are renumbered to their place in the whole call."""
        for result in answer.results:
            result.index += self._offset
        self._answers.append(answer)
        self._offset += len(answer.results)

    def record_error(self, error: VisionServeError) -> None:
        """A chunk refused: smaller chunks, that image's error, or the call's error."""
        limit = error.details.get("limit")
        if error.code == "too_many_images" and isinstance(limit, int) and 0 < limit < self.size:
            self.size = limit
            return
        chunk = self.next_chunk()
        if len(chunk) == 1 and error.is_image_error:
            self._failed.append((self._offset, chunk[0], error))
            self._offset += 1
            return
        raise error

    def response(self) -> Response:
        """All answers as one response, results in upload order."""
        if not self._answers:
            raise self._failed[0][2]  # nothing but one unusable image: the service's answer
        merged = self._answers[0].model_copy(deep=True)
        results = [result for answer in self._answers for result in answer.results]
        result_type = type(results[0]) if results else None
        for index, file, error in self._failed:
            body = ErrorBody(code=error.code, message=error.message, details=error.details)
            assert result_type is not None
            results.append(result_type(index=index, filename=file.name, error=body))
        merged.results = sorted(results, key=lambda result: result.index)
        if isinstance(merged, AddReferencesResponse):
            # Each request stored its usable photos together; the product now has the last
            # answer's count.
            merged.added = sum(answer.added for answer in self._answers)
            merged.references = self._answers[-1].references
        return merged
