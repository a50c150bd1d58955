"""Detection training: COCO loading, a few steps that lower the loss, export parity, evaluate."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.runtime.card import DetectionSpec, ModelCard
from app.runtime.loader import load_model
from tests.conftest import RedBoxDetector, tiny_detector_card
from tests.training.helpers import write_coco
from training.cli import main
from training.core.engine import StepSettings, Updater
from training.core.export import (
    detection_gap,
    detection_parity_inputs,
    export_model,
    framework_versions,
)
from training.detection.artifact import evaluate_detector
from training.detection.data import ServedImages, TrainImages, collate, load_split
from training.detection.engine import train_one_epoch
from training.detection.metrics import coco_metrics
from training.detection.models import (
    DETECTOR_ARCHS,
    DetectorConfig,
    ScriptableDetector,
    create_detector,
)
from training.detection.trainer import detector_input_spec


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco(root, "train", 8)
    write_coco(root, "val", 4)
    write_coco(root, "test", 4, size=(400, 300))
    return root


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Detector steps on 64-px images are tiny; two threads on a busy 2-core box only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_detector(
    score_threshold: float = 0.05, arch: str = "fasterrcnn_mobilenet_v2"
) -> ScriptableDetector:
    config = DetectorConfig(
        arch, 3, image_size=64, fpn_channels=32, score_threshold=score_threshold
    )
    torch.manual_seed(0)
    detector = create_detector(config, weights="none")
    # Fresh heads give many boxes exactly the same score, and which of them survive the cut is
    # arbitrary; a little noise makes the scores distinct, like a trained model's.
    with torch.no_grad():
        for parameter in detector.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return ScriptableDetector(detector)


def detector_card(**changes: object) -> ModelCard:
    card = ModelCard(
        name="tiny-frcnn",
        version="0.0.1",
        task="detect",
        architecture="fasterrcnn_mobilenet_v2",
        framework=framework_versions(),
        labels=("__background__", "blue thing", "red thing"),
        input=detector_input_spec(64),
        detection=DetectionSpec(score_threshold=0.5),
    )
    return card.model_copy(update=changes)


def test_coco_split_maps_categories_and_boxes(coco_folder: Path) -> None:
    split = load_split(coco_folder, "train")
    assert split.labels == ("__background__", "red thing", "blue thing")
    boxes, labels = split.target(1)
    annotations = [a for a in split.coco["annotations"] if a["image_id"] == 11]
    x, y, w, h = annotations[0]["bbox"]
    assert boxes[0].tolist() == [x, y, x + w, y + h]
    assert labels.tolist() == [1, 2]


def test_train_preset_keeps_boxes_on_the_resized_image(coco_folder: Path) -> None:
    split = load_split(coco_folder, "test")
    torch.manual_seed(0)
    pixels, target = TrainImages(split, detector_input_spec(64))[1]
    assert pixels.dtype == torch.uint8 and max(pixels.shape[1:]) == 64
    boxes = target["boxes"]
    assert len(boxes) == len(target["labels"]) >= 1
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes[:, 2] <= pixels.shape[2]).all() and (boxes[:, 3] <= pixels.shape[1]).all()


def test_served_images_carry_the_factor_back_to_original_pixels(coco_folder: Path) -> None:
    pixels, scale, image_id = ServedImages(
        load_split(coco_folder, "test"), detector_input_spec(64)
    )[0]
    assert tuple(pixels.shape) == (3, 48, 64)
    assert scale.tolist() == pytest.approx([400 / 64, 300 / 48] * 2)
    assert image_id == 10


def test_a_few_steps_lower_the_loss(coco_folder: Path) -> None:
    split = load_split(coco_folder, "train")
    dataset = TrainImages(split, detector_input_spec(64))
    torch.manual_seed(0)
    batch = collate([dataset[i] for i in range(4)])
    model = tiny_detector().detector
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    optimization = Updater(optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False))
    settings = StepSettings(torch.device("cpu"), progress=False)
    losses = [
        train_one_epoch(model, [batch] * 2, optimization, settings, "t").loss for _ in range(6)
    ]
    assert losses[-1] < losses[0] * 0.85


@pytest.mark.parametrize("arch", DETECTOR_ARCHS)
def test_exported_detector_matches_eager_and_loads(arch: str, tmp_path: Path) -> None:
    module = tiny_detector(score_threshold=0.0, arch=arch).eval()
    card = detector_card(architecture=arch)
    directory = export_model(module, card, tmp_path)
    loaded = load_model(directory, torch.device("cpu"))
    inputs = detection_parity_inputs(card)
    assert len({tuple(image.shape) for image in inputs}) == len(inputs)  # sizes differ
    with torch.inference_mode():
        expected, actual = module(inputs), loaded.module(inputs)
    assert sum(len(output["boxes"]) for output in expected) > 0  # parity compared real boxes
    for want, got in zip(expected, actual, strict=True):
        assert len(got["boxes"]) == len(want["boxes"]) and got["labels"].dtype == torch.int64
        # Matched as sets: equal scores may leave the final sort in either order.
        assert detection_gap(want, got, side=64.0) < 1e-4


def test_perfect_detections_score_map_one(coco_folder: Path) -> None:
    split = load_split(coco_folder, "val")
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in split.coco["annotations"]
    ]
    metrics = coco_metrics(split.coco, detections, split.labels)
    assert metrics.map == pytest.approx(1.0) and metrics.map50 == pytest.approx(1.0)
    assert set(metrics.per_class) == {"red thing", "blue thing"}
    assert coco_metrics(split.coco, [], split.labels).map == 0.0


def test_evaluate_scores_an_exported_detector_in_original_pixels(
    coco_folder: Path, tmp_path: Path
) -> None:
    card = tiny_detector_card().model_copy(
        update={"labels": ("__background__", "red thing", "blue thing")}
    )
    directory = export_model(RedBoxDetector(), card, tmp_path)
    result = evaluate_detector(directory, str(coco_folder), "test", workers=0, progress=False)
    # The red boxes were found on 160-px inputs and scaled back to the 400x300 originals.
    assert result.metrics.per_class["red thing"]["ap50"] == pytest.approx(1.0)
    assert result.metrics.per_class["red thing"]["ap"] > 0.8
    # Its weak whole-image "class 2" boxes match no blue rectangle well.
    assert result.metrics.per_class["blue thing"]["ap"] < 0.5


@pytest.mark.slow
def test_cli_trains_exports_and_evaluates_a_detector(coco_folder: Path, tmp_path: Path) -> None:
    arguments = ["train", "--data", str(coco_folder), "--arch", "fasterrcnn_mobilenet_v2",
                 "--weights", "none", "--image-size", "64", "--fpn-channels", "16",
                 "--epochs", "2", "--batch-size", "4", "--workers", "0", "--name", "tiny",
                 "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "models"),
                 "--no-progress"]  # fmt: skip
    assert main(arguments) == 0
    model_dir = tmp_path / "models" / "tiny"
    card = json.loads((model_dir / "card.json").read_text())
    assert card["task"] == "detect" and card["labels"][0] == "__background__"
    assert card["input"]["resize_mode"] == "longer_side"
    for name in ("metrics.json", "results.csv", "pr_curve.png", "predictions.png"):
        assert (model_dir / name).is_file()
    output = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(coco_folder),
                 "--workers", "0", "--json", str(output)]) == 0  # fmt: skip
    assert "map50" in json.loads(output.read_text())
    resumed = ["train", "--resume", str(tmp_path / "runs" / "tiny" / "last.pt"), "--epochs", "3",
               "--workers", "0", "--no-progress", "--no-export"]  # fmt: skip
    assert main(resumed) == 0
    best = str(tmp_path / "runs" / "tiny" / "best.pt")
    assert main(["export", "--weights", best, "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "tiny" / "card.json").read_text())
    assert again["task"] == "detect"
    assert again["labels"] == card["labels"]
