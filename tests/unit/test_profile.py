"""Tuning profiles: written after a measurement, used when their key matches, else replaced."""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from app.runtime.autotune import TuningPolicy, profile_key, tune_model
from app.runtime.loader import LoadedModel, load_model
from app.runtime.profile import ProfileKey, read_profile, write_profile
from app.runtime.tuning import Comparison, TrialPlan, Tuning
from tests.conftest import TINY_DETECTOR, TINY_MODEL

CPU = torch.device("cpu")
KEY = ProfileKey(
    model_sha256="a" * 64,
    cpu="Some CPU",
    torch_version="2.14.1",
    device="cpu",
    inference_threads=2,
    torch_threads=1,
    max_batch_size=16,
    optimize_cpu=True,
    autotune_batch_size=True,
    allocator="glibc, 2 arenas, glibc's own mmap threshold",
)
TUNING = Tuning(
    runtime="oneDNN",
    runtime_reason="oneDNN, batch norm folded",
    batch_size=4,
    source="measured",
    batch_trial=Comparison(
        chosen="4",
        margin=0.1,
        rounds=7,
        ms_per_image={"1": 5.8, "2": 5.5, "4": 4.8},
        relative_cost={"1": 1.21, "2": 1.15, "4": 1.0},
    ),
)


def policy(directory: Path, **changes: Any) -> TuningPolicy:
    quick = TrialPlan(
        min_rounds=2, max_rounds=2, budget_s=0.0
    )  # real runs; nothing asserted on time
    base = TuningPolicy(
        optimize_cpu=True,
        autotune_batch_size=True,
        max_batch_size=4,
        inference_threads=1,
        torch_threads=1,
        profile_dir=directory,
        plan=quick,
    )
    return dataclasses.replace(base, **changes)


def tiny(model_store: Path, name: str = TINY_MODEL) -> LoadedModel:
    return load_model(model_store / name, CPU)


def test_a_profile_reads_back_as_written(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "m", KEY, TUNING)
    assert path == tmp_path / "m.json"
    stored = json.loads(path.read_text())
    assert stored["key"]["model_sha256"] == "a" * 64  # for people: plain, readable JSON
    assert stored["tuning"]["batch_trial"]["relative_cost"]["4"] == 1.0
    assert read_profile(tmp_path, "m", KEY) == TUNING
    assert read_profile(tmp_path, "other", KEY) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_sha256", "b" * 64),
        ("cpu", "Another CPU"),
        ("torch_threads", 2),
        ("max_batch_size", 8),
        ("optimize_cpu", False),
        ("allocator", "not glibc"),
    ],
)
def test_a_profile_for_another_key_is_not_used(
    tmp_path: Path, field: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    write_profile(tmp_path, "m", KEY, TUNING)
    with caplog.at_level(logging.INFO):
        changed: dict[str, Any] = {field: value}
        assert read_profile(tmp_path, "m", dataclasses.replace(KEY, **changed)) is None
    assert f"made for another {field}; measuring again" in caplog.text


def test_a_damaged_profile_is_measured_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "m.json").write_text('{"key": {"model_sha256": ')
    assert read_profile(tmp_path, "m", KEY) is None
    assert "unreadable tuning profile, measuring again" in caplog.text


def test_a_profile_from_before_the_allocator_was_keyed_is_measured_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_profile(tmp_path, "m", KEY, TUNING)
    assert path is not None
    stored = json.loads(path.read_text())
    del stored["key"]["allocator"]  # as written by the service before the key held it
    path.write_text(json.dumps(stored))
    assert read_profile(tmp_path, "m", KEY) is None
    assert "unreadable tuning profile, measuring again" in caplog.text


def test_an_unwritable_folder_costs_a_warning_not_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert write_profile(blocker / "tuning", "m", KEY, TUNING) is None
    assert "could not write the tuning profile" in caplog.text


def test_the_first_start_measures_and_later_starts_use_the_profile(
    model_store: Path, tmp_path: Path
) -> None:
    loaded = tiny(model_store)
    _, first = tune_model(loaded, policy(tmp_path))
    assert first.source == "measured"
    assert first.profile == str(tmp_path / f"{TINY_MODEL}@0.0.1.json")
    assert first.batch_trial is not None
    assert set(first.batch_trial.relative_cost) == {"1", "2", "4"}
    served, second = tune_model(loaded, policy(tmp_path))
    assert second.source == "profile"
    assert dataclasses.replace(second, source="measured") == first
    assert (served.module is loaded.module) == (first.runtime == "as loaded")


def test_a_changed_setting_or_tune_command_measures_again(
    model_store: Path, tmp_path: Path
) -> None:
    loaded = tiny(model_store)
    tune_model(loaded, policy(tmp_path))
    _, other_cap = tune_model(loaded, policy(tmp_path, max_batch_size=2))
    assert other_cap.source == "measured"
    assert other_cap.batch_size in (1, 2)
    _, again = tune_model(loaded, policy(tmp_path, max_batch_size=2, remeasure=True))
    assert again.source == "measured"
    stored = read_profile(
        tmp_path, f"{TINY_MODEL}@0.0.1", profile_key(loaded, policy(tmp_path, max_batch_size=2))
    )
    assert stored is not None


def test_nothing_to_decide_serves_the_settings_and_writes_nothing(
    model_store: Path, tmp_path: Path
) -> None:
    off = policy(tmp_path, optimize_cpu=False, autotune_batch_size=False)
    _, tuning = tune_model(tiny(model_store), off)
    assert (tuning.source, tuning.runtime, tuning.batch_size) == ("settings", "as loaded", 4)
    assert tuning.profile is None
    assert not list(tmp_path.iterdir())


def test_a_detector_is_tuned_for_batch_size_only(model_store: Path, tmp_path: Path) -> None:
    _, tuning = tune_model(tiny(model_store, TINY_DETECTOR), policy(tmp_path))
    assert tuning.runtime == "as loaded"
    assert tuning.runtime_reason == "oneDNN applies to classifiers and segmenters on CPU only"
    assert tuning.runtime_trial is None
    assert tuning.batch_trial is not None
