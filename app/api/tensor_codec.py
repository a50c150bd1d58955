"""The Open Inference Protocol v2 wire format: JSON tensors and the binary tensor extension.

A request is JSON, optionally followed by raw tensor bytes when the header
`Inference-Header-Content-Length` gives the JSON's length; an input with parameter
`binary_data_size` takes its bytes from there, in input order. BYTES elements travel as a
4-byte little-endian length and the bytes (Triton's layout, what tritonclient sends). Images
in a JSON-only request are base64 strings, since JSON strings cannot carry arbitrary bytes.
"""

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import InvalidRequest
from app.services.open_inference import Tensor

HEADER_LENGTH = "inference-header-content-length"
_LENGTH = struct.Struct("<I")
_NUMPY = {"INT32": "<i4", "INT64": "<i8", "FP32": "<f4"}


class RequestInput(BaseModel):
    """One input tensor of an inference request."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output the caller asks for; parameter `binary_data` picks its encoding."""

    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequestBody(BaseModel):
    """The JSON part of `POST /v2/models/{name}/infer`."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True, kw_only=True)
class InputTensor:
    """An input with its elements: bytes for BYTES, numbers otherwise, flattened."""

    name: str
    datatype: str
    shape: list[int]
    elements: list[Any]


def decode_request(
    body: bytes, header_length: str | None
) -> tuple[InferRequestBody, list[InputTensor]]:
    """The request's JSON and its inputs with their elements, or 400 saying what is wrong."""
    json_part, binary = _split(body, header_length)
    try:
        request = InferRequestBody.model_validate_json(json_part)
    except ValidationError as error:
        raise InvalidRequest(f"The inference request is malformed: {error}") from None
    offset, inputs = 0, []
    for spec in request.inputs:
        size = spec.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidRequest(f"Input {spec.name!r}: binary_data_size exceeds the body.")
            elements = _binary_elements(spec, binary[offset : offset + size])
            offset += size
        elif spec.data is not None:
            elements = _json_elements(spec)
        else:
            raise InvalidRequest(f"Input {spec.name!r} has neither data nor binary_data_size.")
        if len(elements) != _count(spec.shape):
            raise InvalidRequest(
                f"Input {spec.name!r}: shape {spec.shape} but {len(elements)} elements."
            )
        inputs.append(
            InputTensor(name=spec.name, datatype=spec.datatype, shape=spec.shape, elements=elements)
        )
    if offset != len(binary):
        raise InvalidRequest("The body has binary data that no input claims.")
    return request, inputs


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[Tensor],
    binary: set[str],
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; outputs named in `binary` travel as raw bytes."""
    tensors, blobs = [], []
    for output in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
        }
        if output.name in binary:
            raw = _raw(output)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif output.datatype == "BYTES":
            tensor["data"] = [element.decode() for element in output.elements]
        else:
            tensor["data"] = output.elements
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = tensors
    head = json.dumps(answer, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return head + b"".join(blobs), headers


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise InvalidRequest(f"{HEADER_LENGTH} {header_length!r} does not fit the body.")
    return body[:length], body[length:]


def _binary_elements(spec: RequestInput, raw: bytes) -> list[Any]:
    if spec.datatype != "BYTES":
        if spec.datatype not in _NUMPY:
            raise InvalidRequest(f"Input {spec.name!r}: datatype {spec.datatype} is not served.")
        return list(np.frombuffer(raw, dtype=_NUMPY[spec.datatype]).tolist())
    elements, offset = [], 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidRequest(f"Input {spec.name!r}: a BYTES element is cut short.")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidRequest(f"Input {spec.name!r}: a BYTES element is cut short.")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def _json_elements(spec: RequestInput) -> list[Any]:
    flat = list(_flatten(spec.data or []))
    if spec.datatype != "BYTES":
        return flat
    try:
        return [base64.b64decode(element, validate=True) for element in flat]
    except (binascii.Error, TypeError, ValueError):
        raise InvalidRequest(
            f"Input {spec.name!r}: BYTES in JSON must be base64 strings "
            "(or send them with the binary tensor extension)."
        ) from None


def _flatten(data: list[Any]) -> Any:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _raw(output: Tensor) -> bytes:
    if output.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(element)) + element for element in output.elements)
    return np.asarray(output.elements, dtype=_NUMPY[output.datatype]).tobytes()


def _count(shape: list[int]) -> int:
    count = 1
    for dimension in shape:
        if dimension < 0:
            raise InvalidRequest(f"Shape {shape} has a negative dimension.")
        count *= dimension
    return count
