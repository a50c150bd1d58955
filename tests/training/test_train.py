"""End to end on real images: training learns, resumes exactly, exports, and evaluates the same."""

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from app.runtime.loader import load_model
from tests.images import solid
from tests.training.helpers import quick_config
from training.classification import trainer
from training.classification.artifact import evaluate_artifact
from training.classification.engine import train_one_epoch
from training.classification.metrics import Tally
from training.classification.trainer import RunResult, train
from training.cli import main
from training.core.checkpoint import load_checkpoint
from training.core.export import parity_inputs

REPORT_FILES = ("metrics.json", "confusion_matrix.png", "curves.png", "misclassified.png")


@pytest.fixture(scope="module")
def trained(fashion_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One short run on the real-image folder, shared by the checks below."""
    tmp_path = tmp_path_factory.mktemp("trained")
    return train(quick_config(fashion_folder, tmp_path, epochs=4), "pytest")


def results(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "results.csv").open() as stream:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(stream)]


def test_training_learns(trained: RunResult) -> None:
    rows = results(trained.run_dir)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert trained.split == "test"
    assert trained.metrics.count == 60
    assert trained.metrics.top1 > 0.6  # four classes: chance is 0.25


def test_run_folder_holds_config_checkpoints_and_report(trained: RunResult) -> None:
    run_dir = trained.run_dir
    for name in ("config.json", "results.csv", "best.pt", "last.pt", *REPORT_FILES):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 4
    assert config["label_smoothing"] == 0.1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"top1", "top5", "macro_f1", "per_class", "confusion"}
    assert set(metrics["test"]["per_class"]["bag"]) == {"precision", "recall", "f1", "support"}
    for name in ("best.pt", "last.pt"):
        payload = torch.load(run_dir / name, weights_only=True)
        assert payload["arch"] == "smallcnn"
    assert load_checkpoint(run_dir / "last.pt").state.epoch == 4


def test_the_export_is_served_with_its_metrics(trained: RunResult) -> None:
    assert trained.model_dir is not None
    loaded = load_model(trained.model_dir, torch.device("cpu"))
    card = loaded.card
    assert card.labels == ("bag", "sandal", "shirt", "trouser")
    assert card.input.color_mode == "RGB"
    assert card.input.resize_mode == "stretch"
    assert card.input.resize_size == 24
    test = card.metrics[0]
    assert test.split == "test"
    assert test.values["top1"] == pytest.approx(trained.metrics.top1)
    assert card.training is not None
    assert card.training["command"] == "pytest"
    assert {"wall_time_s", "images_per_s", "machine", "recipe"} <= set(card.training)
    for name in REPORT_FILES:
        assert (trained.model_dir / name).is_file()
    logits, embeddings, embedding_map, class_map = loaded.module(parity_inputs(card))
    assert logits.shape == (2, 4)
    assert embeddings.shape == (2, card.embedding_dim)
    # SmallCNN's pooling + linear head: the export carries the activation maps (explain=true).
    assert embedding_map.shape[:2] == (2, card.embedding_dim)
    assert class_map.shape == (2, *embedding_map.shape[2:])
    # 16 validation images are too few to calibrate on: served without decisions, not refused.
    assert card.calibration is None


def test_evaluating_the_artifact_agrees_with_the_run(
    trained: RunResult, fashion_folder: Path
) -> None:
    assert trained.model_dir is not None
    result = evaluate_artifact(trained.model_dir, str(fashion_folder), "test", progress=False)
    assert result.metrics.count == trained.metrics.count
    assert result.metrics.confusion == trained.metrics.confusion
    assert result.metrics.top1 == trained.metrics.top1
    assert result.metrics.loss == pytest.approx(trained.metrics.loss, abs=1e-4)


def test_an_interrupted_run_resumes_to_the_same_weights(
    fashion_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick_config(fashion_folder, tmp_path, epochs=2, export=False, max_per_class=20)
    straight = train(config, "pytest")
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, "pytest")
    monkeypatch.undo()
    run_dir = config.runs / "quick-2"
    resumed = train(config, "pytest", load_checkpoint(run_dir / "last.pt"), run_dir)
    assert [row["epoch"] for row in results(resumed.run_dir)] == [1, 2]
    left = load_checkpoint(straight.run_dir / "last.pt").model
    right = load_checkpoint(resumed.run_dir / "last.pt").model
    for key, value in left.items():
        torch.testing.assert_close(right[key], value, msg=key)


def test_cli_resume_with_more_epochs(trained: RunResult, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    code = main(["train", "--resume", str(run_dir / "last.pt"), "--epochs", "5", "--no-progress",
                 "--no-export"])  # fmt: skip
    assert code == 0
    assert [row["epoch"] for row in results(run_dir)] == [1, 2, 3, 4, 5]
    assert load_checkpoint(run_dir / "last.pt").config["epochs"] == 5


def test_corrupt_file_is_reported_and_training_goes_on(
    fashion_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(fashion_folder, data)
    victim = next((data / "train" / "bag").iterdir())
    victim.write_bytes(victim.read_bytes()[:40])
    (data / "train" / "bag" / "scan.jpg").write_bytes(b"%PDF-1.4 not an image")
    with caplog.at_level(logging.INFO):
        result = train(quick_config(data, tmp_path, epochs=1, export=False), "pytest")
    assert "2 unreadable file(s), skipped" in caplog.text
    assert str(victim) in caplog.text
    assert "a PDF document" in caplog.text
    assert result.state.epoch == 1


def test_early_stopping_stops_when_validation_stalls(
    fashion_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stalled(*args: object, **kwargs: object) -> tuple[Tally, list[object]]:
        return Tally(torch.full((4, 4), 5), 80, 10.0), []

    monkeypatch.setattr(trainer, "evaluate", stalled)
    monkeypatch.setattr(trainer, "write_outputs", lambda *args: None)
    config = quick_config(
        fashion_folder, tmp_path, epochs=10, patience=2, export=False, max_per_class=10
    )
    result = train(config, "pytest")
    assert result.state.epoch == 3  # first at epoch 1, then two epochs of no progress
    assert result.state.best_epoch == 2  # an exact tie (same top-1 and loss) keeps the later


def test_bad_folder_exits_with_a_message_before_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "data" / "cats" / "1.png").write_bytes(solid((200, 100, 50)))
    code = main(["train", "--data", str(tmp_path / "data"), "--runs", str(tmp_path / "runs")])
    assert code == 2
    assert "found one class ('cats')" in caplog.text
    assert not (tmp_path / "runs").exists()


def test_a_run_without_batch_size_or_lr_records_the_scaled_recipe(
    fashion_folder: Path, tmp_path: Path
) -> None:
    config = quick_config(fashion_folder, tmp_path, epochs=1, export=False, batch_size=0, lr=0.0)
    result = train(config, "pytest")
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert recorded["batch_size"] == 16  # 144 training images: 9 steps an epoch
    assert recorded["lr"] == pytest.approx(2e-3 * (16 / 128) ** 0.5)
    assert result.state.step == 9


def test_export_of_a_runs_best_checkpoint_gives_the_runs_card(
    trained: RunResult, tmp_path: Path
) -> None:
    assert trained.model_dir is not None
    weights = str(trained.run_dir / "best.pt")
    code = main(["export", "--weights", weights, "--name", "again", "--out", str(tmp_path)])
    assert code == 0
    shipped = load_model(trained.model_dir, torch.device("cpu"))
    again = load_model(tmp_path / "again", torch.device("cpu"))
    assert again.card.name == "again"
    assert again.card.model_copy(update={"name": shipped.card.name}) == shipped.card.model_copy(
        update={"created_at": again.card.created_at}
    )
    inputs = parity_inputs(shipped.card)
    torch.testing.assert_close(again.module(inputs), shipped.module(inputs))
    for name in REPORT_FILES:
        assert (tmp_path / "again" / name).is_file()


def test_export_of_another_checkpoint_or_with_flags_it_ignores_is_one_line(
    trained: RunResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = str(trained.run_dir / "last.pt")
    best = str(trained.run_dir / "best.pt")
    out = ["--out", str(tmp_path)]
    assert main(["export", "--weights", last, *out]) == 2
    assert main(["export", "--weights", best, "--arch", "resnet18", *out]) == 2
    assert main(["export", "--weights", best, "--labels", last, *out]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == [
        f"{last}: export takes a run's best.pt, the weights its metrics.json describes",
        f"--arch resnet18: {best} is a smallcnn",
        f"--labels: {best} has its own (bag, sandal, shirt, trouser)",
    ]
    assert not list(tmp_path.iterdir())
