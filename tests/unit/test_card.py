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


WATERMARK = {
    "scheme": "adi-trigger-set-v1",
    "trigger_count": 100,
    "classes": 3,
    "trigger_accuracy_at_export": 1.0,
    "key_id": "0123456789abcdef",
}


def test_a_watermark_round_trips_and_older_cards_have_none() -> None:
    card = tiny_card().model_validate(tiny_card().model_dump() | {"watermark": WATERMARK})
    assert parse_card(card.to_json()) == card
    assert card.watermark is not None and card.watermark.key_id == "0123456789abcdef"
    assert parse_card(tiny_card().to_json()).watermark is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": 4}, "number of labels"),
        ({"key_id": "0" * 64}, "key_id"),  # a prefix, never a whole hash (or the key)
        ({"trigger_accuracy_at_export": 1.5}, "trigger_accuracy_at_export"),
        ({"scheme": "other"}, "scheme"),
    ],
)
def test_a_watermark_record_is_checked(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        tiny_card().model_validate(tiny_card().model_dump() | {"watermark": WATERMARK | change})


def test_only_classifiers_carry_a_watermark() -> None:
    detector = tiny_card().model_dump() | {
        "task": "detect",
        "detection": DetectionSpec(score_threshold=0.5).model_dump(),
        "input": InputSpec(resize_mode="longer_side", resize_size=64).model_dump(),
    }
    tiny_card().model_validate(detector)
    with pytest.raises(ValidationError, match="describe classifiers only"):
        tiny_card().model_validate(detector | {"watermark": WATERMARK})
