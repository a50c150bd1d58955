"""Settings read from the environment the way docker compose passes them."""

import pytest

from app.config import Settings

FIELDS = ("max_batch_size", "device", "api_keys", "torch_threads", "log_format")


def test_empty_variables_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in FIELDS:
        monkeypatch.setenv(f"VISION_{field.upper()}", "")
    settings = Settings()
    for field in FIELDS:
        assert getattr(settings, field) == Settings.model_fields[field].get_default(
            call_default_factory=True
        )


def test_set_variables_override_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("VISION_API_KEYS", "a, b")
    settings = Settings()
    assert settings.max_batch_size == 4
    assert settings.api_keys == frozenset({"a", "b"})
