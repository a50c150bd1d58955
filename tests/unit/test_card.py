"""The card schema: round trip, versioning and the task rules."""

import pytest
from pydantic import ValidationError

from app.runtime.card import (
    DetectionSpec,
    InputSpec,
    parse_card,
    parse_stored_card,
    stored_card_json,
)
from tests.conftest import tiny_card


def test_round_trip_through_json() -> None:
    card = tiny_card()
    assert parse_card(card.to_json()) == card


def test_stored_card_adds_only_the_hash() -> None:
    card = tiny_card()
    stored = parse_stored_card(stored_card_json(card, "ab" * 32))
    assert stored.sha256 == "ab" * 32
    assert stored.card() == card


def test_unknown_card_version_is_refused() -> None:
    text = tiny_card().to_json().replace('"card_version": 1', '"card_version": 2')
    with pytest.raises(ValidationError, match="card_version"):
        parse_card(text)


def test_unknown_fields_are_refused() -> None:
    text = tiny_card().to_json().replace('"task"', '"colour": 1, "task"')
    with pytest.raises(ValidationError, match="colour"):
        parse_card(text)


def test_classifier_needs_a_fixed_input_size() -> None:
    with pytest.raises(ValidationError, match="fixed size"):
        tiny_card().model_validate(
            tiny_card().model_dump() | {"input": InputSpec(resize_size=32).model_dump()}
        )


def test_detector_needs_its_detection_spec() -> None:
    with pytest.raises(ValidationError, match="detection"):
        tiny_card().model_validate(tiny_card().model_dump() | {"task": "detect"})
    spec = DetectionSpec(score_threshold=0.5).model_dump()
    with pytest.raises(ValidationError, match="detection"):
        tiny_card().model_validate(tiny_card().model_dump() | {"detection": spec})


def test_crop_cannot_exceed_resize() -> None:
    with pytest.raises(ValidationError, match="crop_size"):
        InputSpec(resize_size=32, crop_size=64)
