"""Segmentation training: metrics, a few steps that lower the loss, export parity, the CLI."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from app.runtime.loader import load_model
from tests.segmenters import ColorSegmenter, tiny_segmenter_card
from tests.training.segmentation_data import LABELS, write_mask_folder
from training.cli import main
from training.core.config import ConfigError
from training.core.engine import StepSettings, Updater
from training.core.export import ExportError, export_model
from training.segmentation.data import load_mask_folder
from training.segmentation.datasets import TrainPairs, collate_train
from training.segmentation.engine import train_one_epoch
from training.segmentation.metrics import SegmentationScorer
from training.segmentation.models import Segmenter, SegmenterConfig
from training.segmentation.publish import check_segmentation_parity
from training.train_cli import train_command


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Steps on 64-px images are tiny; two threads on a busy 2-core box only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mask_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mask_folder(tmp_path_factory.mktemp("masks"), {"train": 8, "val": 4, "test": 4})


def test_iou_counts_classes_that_occur_and_ignores_255() -> None:
    scorer = SegmentationScorer(("background", "a", "b", "c"))
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    predicted = torch.tensor([[0, 0, 1, 0], [0, 2, 1, 1]])
    scorer.update(predicted, truth)
    metrics = scorer.compute()
    per_class = {label: row["iou"] for label, row in metrics.per_class.items()}
    # background: 3 hits of 5 in the union; a: 2 of 3; b: predicted once, never true; c absent.
    assert per_class == {"background": 0.6, "a": pytest.approx(2 / 3), "b": 0.0, "c": None}
    assert metrics.miou == pytest.approx((0.6 + 2 / 3 + 0.0) / 3)
    assert metrics.pixel_accuracy == pytest.approx(5 / 7)
    assert metrics.pixels == 7 and metrics.images == 1


def test_a_few_steps_lower_the_loss(mask_folder: Path) -> None:
    torch.manual_seed(0)
    model = Segmenter(SegmenterConfig(arch="lraspp_mobilenet_v2", num_classes=3), "none")
    loader = DataLoader(
        TrainPairs(load_mask_folder(mask_folder)["train"], 64), 4, collate_fn=collate_train
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    updater = Updater(optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False))
    settings = StepSettings(torch.device("cpu"), progress=False)
    losses = [train_one_epoch(model, loader, updater, settings, "t").loss for _ in range(4)]
    assert losses[-1] < losses[0]


def test_export_checks_parity_and_refuses_a_different_module(tmp_path: Path) -> None:
    card = tiny_segmenter_card("parity-check")
    export_model(ColorSegmenter(), card, tmp_path, parity=check_segmentation_parity)
    loaded = load_model(tmp_path / "parity-check", torch.device("cpu"))
    assert loaded.card.task == "segment"

    class Shifted(nn.Module):
        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = ColorSegmenter()(pixels)
            return logits.roll(1, dims=3)

    def mismatched(eager: nn.Module, scripted: torch.jit.ScriptModule, card: object) -> None:
        check_segmentation_parity(Shifted(), scripted, tiny_segmenter_card("parity-check"))

    with pytest.raises(ExportError, match="differ"):
        export_model(ColorSegmenter(), card, tmp_path / "again", parity=mismatched)


def test_flags_of_other_tasks_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="--score-threshold applies to detection"):
        train_command(["--data", "builtin:scenes-seg", "--score-threshold", "0.5"])
    with pytest.raises(ConfigError, match="--label-smoothing applies to classification"):
        train_command(["--arch", "lraspp_mobilenet_v2", "--data", "x", "--label-smoothing", "0"])


def test_cli_trains_exports_evaluates_and_resumes_a_segmenter(
    mask_folder: Path, tmp_path: Path
) -> None:
    runs, store = tmp_path / "runs", tmp_path / "models"
    arguments = ["train", "--data", str(mask_folder), "--weights", "none", "--image-size", "64",
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--name", "tiny-seg",
                 "--runs", str(runs), "--store", str(store), "--no-progress"]  # fmt: skip
    assert main(arguments) == 0
    model_dir = store / "tiny-seg"
    card = json.loads((model_dir / "card.json").read_text())
    assert card["task"] == "segment" and tuple(card["labels"]) == LABELS
    assert card["input"]["resize_mode"] == "stretch" and card["input"]["resize_size"] == 64
    test = card["metrics"][0]
    assert test["split"] == "test" and set(test["values"]) >= {"miou", "pixel_accuracy"}
    assert set(test["per_class"]) == set(LABELS)
    for name in ("metrics.json", "results.csv", "per_class_iou.png", "predictions.png"):
        assert (model_dir / name).is_file(), name
    output = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(mask_folder),
                 "--workers", "0", "--json", str(output)]) == 0  # fmt: skip
    # evaluate runs the archive through the service's loader and batch function: the same
    # numbers as the training run's own test scores.
    assert json.loads(output.read_text())["miou"] == pytest.approx(test["values"]["miou"], abs=1e-3)
    resumed = ["train", "--resume", str(runs / "tiny-seg" / "last.pt"), "--epochs", "2",
               "--workers", "0", "--no-progress", "--no-export"]  # fmt: skip
    assert main(resumed) == 0
    assert len((runs / "tiny-seg" / "results.csv").read_text().splitlines()) == 3
