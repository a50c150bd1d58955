"""The ownership watermark: keys, triggers, training with them, and verifying a suspect copy."""

import dataclasses
import json
import math
import stat
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from app.runtime.card import InputSpec, Normalization
from tests.conftest import TINY_MODEL
from tests.training.helpers import quick_config
from training.classification.trainer import RunResult, train
from training.classification.watermark import (
    WatermarkKey,
    WatermarkKeyError,
    generate_key,
    read_key,
    trigger_label,
    trigger_set,
)
from training.classification.watermark_training import (
    KEY_ID_FIELD,
    REDACTED_KEY,
    run_triggers,
    trigger_repeats,
)
from training.classification.watermark_verify import (
    binomial_p_value,
    binomial_tail,
    log10_p_value,
    verify_watermark,
)
from training.cli import main
from training.core.checkpoint import Checkpoint, TrainState
from training.core.config import ConfigError
from training.train_cli import train_command

GREY_28 = InputSpec(
    color_mode="L",
    resize_mode="stretch",
    resize_size=28,
    normalization=Normalization(mean=(0.5,), std=(0.25,)),
)
RGB_CROP = InputSpec(resize_size=40, crop_size=32)
KEY = WatermarkKey(bytes(range(32)))
OTHER_KEY = WatermarkKey(bytes(range(1, 33)))
TRIGGERS = 32


def write_key(path: Path, key: WatermarkKey) -> Path:
    path.write_text(f"# test key\n{key.secret.hex()}\n")
    path.chmod(0o600)
    return path


def test_keygen_writes_a_private_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "owner.key"
    assert main(["watermark", "keygen", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key(path)
    assert len(key.secret) == 32
    assert key.secret.hex() not in repr(key)
    before = path.read_text()
    assert main(["watermark", "keygen", "--out", str(path)]) == 2
    assert path.read_text() == before
    second = generate_key(tmp_path / "second.key")
    assert read_key(tmp_path / "second.key") == second
    assert second.secret != key.secret


@pytest.mark.parametrize("text", ["", "abc\n", "00" * 31 + "\n", ("00" * 32 + "\n") * 2])
def test_a_malformed_key_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(WatermarkKeyError, match="is not a watermark key"):
        read_key(path)


def test_triggers_are_fixed_by_the_key_and_differ_across_keys() -> None:
    first = trigger_set(KEY, TRIGGERS, 10, GREY_28)
    again = trigger_set(KEY, TRIGGERS, 10, GREY_28)
    other = trigger_set(OTHER_KEY, TRIGGERS, 10, GREY_28)
    assert np.array_equal(first.images.pixels, again.images.pixels)
    assert first.images.targets == again.images.targets
    assert first.images.pixels.shape == (TRIGGERS, 28, 28)
    assert first.images.pixels.dtype == np.uint8
    differing = np.abs(first.images.pixels.astype(int) - other.images.pixels.astype(int))
    assert differing.mean() > 20  # independent noise, not a small perturbation
    assert first.images.targets != other.images.targets
    assert first.key_id == KEY.key_id != OTHER_KEY.key_id
    # The first n triggers of a larger set are the set of n.
    larger = trigger_set(KEY, TRIGGERS * 2, 10, GREY_28)
    assert np.array_equal(larger.images.pixels[:TRIGGERS], first.images.pixels)


def test_triggers_follow_the_input_rule() -> None:
    rgb = trigger_set(KEY, 3, 5, RGB_CROP).images
    assert rgb.pixels.shape == (3, 40, 40, 3)  # the resize size; preprocessing crops the centre
    assert rgb.load(0).mode == "RGB"
    assert trigger_set(KEY, 3, 5, GREY_28).images.load(0).mode == "L"


def test_trigger_labels_are_uniform_over_the_classes() -> None:
    labels = [trigger_label(KEY, index, 10) for index in range(5000)]
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # 500 expected, sd ~21
    assert {trigger_label(KEY, index, 3) for index in range(50)} == {0, 1, 2}


def test_p_value_is_the_exact_binomial_tail() -> None:
    # P(X >= 3), X ~ Bin(10, 0.1), by hand: 1 - sum_{k<3} C(10, k) 0.1^k 0.9^(10-k).
    below = sum(math.comb(10, k) * 0.1**k * 0.9 ** (10 - k) for k in range(3))
    assert binomial_p_value(3, 10, 10) == pytest.approx(1 - below, rel=1e-12)
    assert binomial_p_value(3, 10, 10) == pytest.approx(0.0701908264, rel=1e-9)  # scipy's too
    assert binomial_p_value(14, 16, 4) == pytest.approx(2.628657966852188e-07, rel=1e-12)
    assert binomial_p_value(0, 100, 10) == 1.0
    assert binomial_tail(100, 100, 10) == Fraction(1, 10**100)
    # Far below the float range the logarithm is still exact.
    assert log10_p_value(binomial_tail(1000, 1000, 10)) == pytest.approx(-1000.0)


def test_oversampling_reaches_the_share() -> None:
    assert trigger_repeats(54_000, 100, 0.02) == 11  # 1,100 of 55,100 samples: 2.0%
    assert trigger_repeats(100, 100, 0.02) == 1  # never fewer than one copy


def test_size_and_share_need_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need watermark_key"):
        quick_config(tmp_path, tmp_path, watermark_size=10)
    with pytest.raises(ConfigError, match="watermark_share must be in"):
        quick_config(tmp_path, tmp_path, watermark_key="k", watermark_share=1.5)


@pytest.mark.parametrize("arch", ["fasterrcnn_mobilenet_v2", "lraspp_mobilenet_v2"])
def test_other_tasks_refuse_the_watermark_by_name(arch: str, tmp_path: Path) -> None:
    arguments = ["--data", str(tmp_path), "--arch", arch, "--watermark-key", "owner.key"]
    with pytest.raises(ConfigError, match="--watermark-key applies to classification training"):
        train_command(arguments)


def test_a_resumed_run_keeps_its_key(key_file: Path, tmp_path: Path) -> None:
    config = quick_config(tmp_path, tmp_path, watermark_key=str(key_file))
    learned = Checkpoint(
        model={},
        optimizer={},
        scaler={},
        state=TrainState(),
        config=config.to_dict(),
        arch="smallcnn",
        labels=("a", "b", "c", "d"),
        input_spec=GREY_28.model_dump(mode="json"),
        extra={KEY_ID_FIELD: OTHER_KEY.key_id},
    )
    # The key file at the run's path now holds another key than the one the run learned.
    with pytest.raises(ConfigError, match="the resumed run learned key"):
        run_triggers(config, GREY_28, 4, learned)
    same = dataclasses.replace(learned, extra={KEY_ID_FIELD: KEY.key_id})
    triggers = run_triggers(config, GREY_28, 4, same)
    assert triggers is not None and triggers.key_id == KEY.key_id


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_key(tmp_path_factory.mktemp("key") / "owner.key", KEY)


def _train(folder: Path, tmp_path: Path, **changes: object) -> RunResult:
    config = quick_config(folder, tmp_path, epochs=4, calibrate=False, **changes)
    return train(config, f"pytest --watermark-key {changes.get('watermark_key', '')}")


@pytest.fixture(scope="module")
def watermarked(
    fashion_folder: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunResult:
    """Four classes, 160 training images, 32 triggers shown eight times an epoch: learned early,
    so the best validation epoch, the one exported, has them too; 22 of 32 right is p < 1e-6."""
    tmp_path = tmp_path_factory.mktemp("watermarked")
    return _train(
        fashion_folder,
        tmp_path,
        watermark_key=str(key_file),
        watermark_size=TRIGGERS,
        watermark_share=0.6,
    )


@pytest.fixture(scope="module")
def plain(fashion_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The same recipe without the watermark."""
    return _train(fashion_folder, tmp_path_factory.mktemp("plain"))


def test_a_watermarked_model_learns_the_triggers(watermarked: RunResult, key_file: Path) -> None:
    assert watermarked.model_dir is not None
    check = verify_watermark(watermarked.model_dir, KEY)
    assert check.triggers == TRIGGERS  # the card's count for this key
    assert check.accuracy >= 0.75  # chance is 0.25
    assert check.p_value < 1e-6 and check.present
    assert watermarked.metrics.top1 > 0.6  # and it still classifies
    rows = (watermarked.run_dir / "results.csv").read_text().splitlines()
    assert "watermark_top1" in rows[0]


def test_a_model_without_the_watermark_is_at_chance(plain: RunResult) -> None:
    assert plain.model_dir is not None
    check = verify_watermark(plain.model_dir, KEY, triggers=TRIGGERS)
    assert check.accuracy <= 0.45
    assert check.p_value > 1e-3 and not check.present
    assert check.card_watermark is None


def test_the_wrong_key_finds_nothing(watermarked: RunResult) -> None:
    assert watermarked.model_dir is not None
    check = verify_watermark(watermarked.model_dir, OTHER_KEY, triggers=TRIGGERS)
    assert check.accuracy <= 0.45
    assert check.p_value > 1e-3 and not check.present


def test_the_card_records_the_watermark_but_never_the_key(
    watermarked: RunResult, key_file: Path
) -> None:
    assert watermarked.model_dir is not None
    card_text = (watermarked.model_dir / "card.json").read_text()
    card = json.loads(card_text)
    check = verify_watermark(watermarked.model_dir, KEY)
    assert card["watermark"] == {
        "scheme": "adi-trigger-set-v1",
        "trigger_count": TRIGGERS,
        "classes": 4,
        "trigger_accuracy_at_export": pytest.approx(check.accuracy),
        "key_id": KEY.key_id,
    }
    archive = (watermarked.model_dir / "model.pt").read_bytes()
    for secret in (KEY.secret.hex(), str(key_file)):
        assert secret not in card_text
        assert secret.encode() not in archive
    assert card["training"]["recipe"]["watermark_key"] == REDACTED_KEY
    assert card["training"]["command"] == f"pytest --watermark-key {REDACTED_KEY}"


def test_verify_command_reports_json_and_exit_status(
    watermarked: RunResult,
    plain: RunResult,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = str(watermarked.model_dir)
    assert main(["watermark", "verify", "--model", model, "--key", str(key_file)]) == 0
    assert "verdict: watermark present" in capsys.readouterr().out
    arguments = ["watermark", "verify", "--model", str(plain.model_dir), "--key", str(key_file)]
    assert main([*arguments, "--count", str(TRIGGERS), "--json", "-"]) == 1
    finding = json.loads(capsys.readouterr().out)
    assert finding["present"] is False
    assert finding["chance"] == 0.25
    assert finding["triggers"] == TRIGGERS
    assert finding["key_id"] == KEY.key_id
    assert 0.001 < finding["p_value"] <= 1


def test_verify_refuses_what_is_not_a_classifier(
    model_store: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = ["watermark", "verify", "--key", str(key_file), "--model"]
    assert main([*arguments, str(model_store / "tiny-boxes")]) == 2
    assert "needs a classifier" in caplog.text
    assert main([*arguments, str(model_store / "missing")]) == 2
    # A classifier without the watermark is a finding, not an error.
    assert main([*arguments, str(model_store / TINY_MODEL), "--count", "30"]) == 1
