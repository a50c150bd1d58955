"""The /v2 wire format: JSON tensors and the binary tensor extension, byte for byte."""

import json
import struct

import numpy as np
import pytest

from app.api.tensor_codec import HEADER_LENGTH, decode_request, encode_response
from app.errors import InvalidRequest
from app.services.open_inference import Tensor


def binary_request(*elements: bytes, extra: bytes = b"") -> tuple[bytes, str]:
    """A request with one BYTES input in the binary extension, and its header length."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements) + extra
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [len(elements)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw) - len(extra)},
                }
            ]
        }
    ).encode()
    return head + raw, str(len(head))


def test_binary_bytes_elements_are_split_by_their_lengths() -> None:
    body, length = binary_request(b"\xff\xd8jpeg", b"", b"png\x00")
    _, inputs = decode_request(body, length)
    assert inputs[0].elements == [b"\xff\xd8jpeg", b"", b"png\x00"]


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (*binary_request(b"abc", extra=b"??"), "no input claims"),
        (b'{"inputs": []}', "999", "does not fit"),
        (b"not json", None, "malformed"),
    ],
)
def test_broken_bodies_are_refused(body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_request(body, length)


def test_a_cut_short_element_is_refused() -> None:
    raw = struct.pack("<I", 10) + b"abc"  # claims 10 bytes, has 3
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    with pytest.raises(InvalidRequest, match="cut short"):
        decode_request(head + raw, str(len(head)))


def test_binary_outputs_follow_the_json_header() -> None:
    outputs = [
        Tensor(name="LABEL", datatype="BYTES", shape=[2], elements=[b"red", b"green"]),
        Tensor(name="SCORE", datatype="FP32", shape=[2], elements=[0.5, 0.25]),
        Tensor(name="COUNT", datatype="INT32", shape=[2], elements=[1, 1]),
    ]
    body, headers = encode_response(
        model_name="m",
        model_version="1",
        request_id="r",
        outputs=outputs,
        binary={"LABEL", "SCORE"},
    )
    length = int(headers[HEADER_LENGTH])
    head = json.loads(body[:length])
    assert head["id"] == "r"
    label, score, count = head["outputs"]
    assert count["data"] == [1, 1]
    raw = body[length:]
    size = label["parameters"]["binary_data_size"]
    assert raw[:size] == b"\x03\x00\x00\x00red\x05\x00\x00\x00green"
    assert np.frombuffer(raw[size:], "<f4").tolist() == [0.5, 0.25]
    assert size + score["parameters"]["binary_data_size"] == len(raw)


def test_json_only_answers_are_plain_json() -> None:
    outputs = [Tensor(name="LABEL", datatype="BYTES", shape=[1], elements=[b"red"])]
    body, headers = encode_response(
        model_name="m", model_version="1", request_id=None, outputs=outputs, binary=set()
    )
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["outputs"][0]["data"] == ["red"]
