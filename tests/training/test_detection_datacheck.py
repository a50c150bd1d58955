"""The detection dataset check: bad images and annotations are listed, left out, and counted."""

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from tests.conftest import RedBoxDetector, tiny_detector_card
from tests.images import oriented_jpeg
from tests.training.helpers import write_coco
from training.cli import main
from training.core.datacheck import DatasetError
from training.core.export import export_model
from training.detection.artifact import evaluate_detector
from training.detection.data import TrainImages
from training.detection.datacheck import (
    check_detection_data,
    checked_split,
    format_report,
    validate_detection,
)
from training.detection.trainer import detector_input_spec

Coco = dict[str, Any]


def edit_split(root: Path, split: str, change: Callable[[Coco], None]) -> None:
    """Rewrite one split's annotation JSON in place."""
    path = root / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def add_image(coco: Coco, image_id: int, file_name: str, boxes: list[list[float]]) -> None:
    """List an image (120x90) with one red-thing annotation per box."""
    coco["images"].append({"id": image_id, "file_name": file_name, "width": 120, "height": 90})
    for box in boxes:
        add_annotation(coco, image_id, 5, box)


def add_annotation(coco: Coco, image_id: int, category_id: int, box: list[float]) -> None:
    """One more annotation with the next free id."""
    next_id = max(a["id"] for a in coco["annotations"]) + 1
    coco["annotations"].append(
        {
            "id": next_id,
            "image_id": image_id,
            "category_id": category_id,
            "bbox": box,
            "area": 1,
            "iscrowd": 0,
        }
    )


def corrupt_jpeg() -> bytes:
    """The first half of a real JPEG: the header reads, the pixels do not."""
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 120, 40)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    return data[: len(data) // 2]


@pytest.fixture
def coco_folder(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    write_coco(root, "train", 8)
    write_coco(root, "val", 4)
    return root


@pytest.fixture
def messy_folder(coco_folder: Path) -> Path:
    """The tiny folder with one of each problem the check must catch planted in it."""
    (coco_folder / "train" / "broken.jpg").write_bytes(corrupt_jpeg())
    shutil.copy(coco_folder / "train" / "0.png", coco_folder / "val" / "leak.png")

    def plant_train(coco: Coco) -> None:
        add_image(coco, 50, "broken.jpg", [[10, 10, 30, 30]])
        add_image(coco, 51, "missing.png", [[10, 10, 30, 30]])
        add_annotation(coco, 10, 5, [20, 20, 0, 15])  # no width
        add_annotation(coco, 10, 77, [20, 20, 15, 15])  # no such category
        add_annotation(coco, 999, 5, [20, 20, 15, 15])  # no such image
        add_annotation(coco, 11, 9, [20, 20, float("nan"), 15])
        add_annotation(coco, 12, 9, [100, 70, 50, 40])  # runs off the 120x90 image
        add_annotation(coco, 12, 9, [130, 10, 20, 20])  # wholly outside it

    edit_split(coco_folder, "train", plant_train)
    edit_split(coco_folder, "val", lambda coco: add_image(coco, 60, "leak.png", [[1, 2, 30, 20]]))
    return coco_folder


def test_clean_folder_counts_instances_and_images(coco_folder: Path) -> None:
    report = check_detection_data(coco_folder, workers=2).report
    assert report.categories == ("red thing", "blue thing")
    assert report.counts["train"].instances == [8, 4]
    assert report.counts["train"].images == 8 and report.counts["val"].images == 4
    assert report.imbalance == 2.0
    assert not (report.unreadable or report.dropped or report.clipped or report.resized)
    validate_detection(report)


def test_unreadable_and_missing_images_are_listed_and_left_out(messy_folder: Path) -> None:
    checked = check_detection_data(messy_folder, workers=2)
    reasons = dict(checked.report.unreadable)
    assert set(reasons) == {
        str(messy_folder / "train" / name) for name in ("broken.jpg", "missing.png")
    }
    assert "missing" in reasons[str(messy_folder / "train" / "missing.png")]
    train = checked.splits["train"]
    assert {entry["id"] for entry in train.images} == set(range(10, 18))
    assert not {a["image_id"] for a in train.coco["annotations"]} & {50, 51}
    assert checked.report.counts["train"].unreadable == 2
    # Training never meets them: every sample of the cleaned split loads.
    samples = TrainImages(train, detector_input_spec(64))
    assert all(samples[i][0].dtype == torch.uint8 for i in range(len(samples)))


def test_invalid_annotations_are_dropped_and_counted(messy_folder: Path) -> None:
    report = check_detection_data(messy_folder, workers=2).report
    assert report.dropped == {
        "degenerate box (no width or height inside the image)": 2,
        "unknown category_id": 1,
        "unknown image_id": 1,
        "malformed or non-finite bbox": 1,
    }
    assert len(report.dropped_examples) == 5
    assert report.counts["train"].instances == [8, 5]  # the clipped blue box stays


def test_a_box_partly_outside_is_clipped_to_the_image(messy_folder: Path) -> None:
    checked = check_detection_data(messy_folder, workers=2)
    assert checked.report.clipped == 1
    boxes = [a["bbox"] for a in checked.splits["train"].coco["annotations"] if a["image_id"] == 12]
    assert [100.0, 70.0, 20.0, 20.0] in boxes


def test_duplicates_across_splits_are_found(messy_folder: Path) -> None:
    duplicates = check_detection_data(messy_folder, workers=2).report.duplicates
    assert duplicates.groups == 1 and duplicates.crossing == 1
    assert duplicates.examples == [
        [f"train:{messy_folder / 'train' / '0.png'}", f"val:{messy_folder / 'val' / 'leak.png'}"]
    ]


def test_report_names_every_problem(messy_folder: Path) -> None:
    text = format_report(check_detection_data(messy_folder, workers=2).report)
    for expected in (
        "2 categories (COCO)",
        "2 unreadable file(s), skipped",
        "broken.jpg",
        "5 annotation(s) dropped",
        "1 box(es) extending outside their image",
        "1 group(s) of byte-identical images, 1 spanning splits",
    ):
        assert expected in text


def test_a_category_with_no_training_instance_is_a_warning(coco_folder: Path) -> None:
    def drop_blue(coco: Coco) -> None:
        coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] != 9]

    edit_split(coco_folder, "train", drop_blue)
    report = check_detection_data(coco_folder, workers=2).report
    validate_detection(report)
    assert report.untrained_categories == ["blue thing"]
    assert "warning: category 'blue thing' has no training instance" in format_report(report)


def break_every_image(coco: Coco) -> None:
    for entry in coco["images"]:
        entry["file_name"] = "nowhere/" + entry["file_name"]


def drop_annotations(coco: Coco) -> None:
    coco["annotations"] = []


@pytest.mark.parametrize(
    ("split", "change", "message"),
    [
        ("train", break_every_image, r"no readable images in train \(8 listed"),
        ("train", drop_annotations, "no usable annotations in train"),
        ("val", break_every_image, r"validation split is empty \(4 unreadable images\)"),
    ],
)
def test_data_that_cannot_train_is_refused_with_what_to_fix(
    coco_folder: Path, split: str, change: Callable[[Coco], None], message: str
) -> None:
    edit_split(coco_folder, split, change)
    with pytest.raises(DatasetError, match=message):
        validate_detection(check_detection_data(coco_folder, workers=2).report)


def test_missing_val_split_is_refused(coco_folder: Path) -> None:
    (coco_folder / "annotations" / "instances_val.json").unlink()
    with pytest.raises(DatasetError, match="validation split is missing"):
        validate_detection(check_detection_data(coco_folder, workers=2).report)


def test_splits_with_different_categories_are_refused(coco_folder: Path) -> None:
    edit_split(coco_folder, "val", lambda coco: coco["categories"].pop())
    with pytest.raises(DatasetError, match="differ from train's"):
        check_detection_data(coco_folder, workers=2)


def test_cli_check_prints_the_report(
    messy_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--data", str(messy_folder), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 categories (COCO)" in out and "broken.jpg" in out


def test_cli_check_exits_2_after_the_report_when_data_cannot_train(
    coco_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_split(coco_folder, "train", drop_annotations)
    assert main(["check", "--data", str(coco_folder)]) == 2
    assert "images with no object" in capsys.readouterr().out


def test_detector_trains_on_a_folder_with_a_corrupt_image(
    messy_folder: Path, tmp_path: Path
) -> None:
    arguments = ["train", "--data", str(messy_folder), "--arch", "fasterrcnn_mobilenet_v2",
                 "--weights", "none", "--image-size", "64", "--fpn-channels", "16",
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--threads", "1",
                 "--name", "tiny", "--runs", str(tmp_path / "runs"), "--no-export",
                 "--no-progress"]  # fmt: skip
    assert main(arguments) == 0
    dataset = json.loads((tmp_path / "runs" / "tiny" / "dataset.json").read_text())
    assert dataset["counts"]["train"]["unreadable"] == 2
    assert sum(dataset["dropped_annotations"].values()) == 5


def test_one_split_is_cleaned_for_evaluation_and_says_what_it_left_out(
    messy_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        split = checked_split(messy_folder, "train", workers=1)
    names = {image["file_name"] for image in split.images}
    assert len(names) == 8 and not names & {"broken.jpg", "missing.png"}
    assert "left out 2 unreadable image(s) and 5 invalid annotation(s)" in caplog.text
    assert "broken.jpg" in caplog.text


def test_evaluation_skips_a_corrupt_image_instead_of_failing(
    messy_folder: Path, tmp_path: Path
) -> None:
    card = tiny_detector_card().model_copy(
        update={"labels": ("__background__", "red thing", "blue thing")}
    )
    directory = export_model(RedBoxDetector(), card, tmp_path / "models")
    result = evaluate_detector(directory, str(messy_folder), "train", workers=0, progress=False)
    assert result.metrics.per_class["red thing"]["ap50"] == pytest.approx(1.0)


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_training_reads_photos_upright_like_the_service(
    coco_folder: Path, orientation: int
) -> None:
    """Boxes drawn on the upright photo (as annotation tools show it) land on the object."""
    upright = Image.new("RGB", (400, 300), (128, 128, 128))
    upright.paste((220, 20, 20), (40, 60, 200, 180))
    (coco_folder / "train" / "phone.jpg").write_bytes(oriented_jpeg(upright, orientation))

    def add_phone_photo(coco: Coco) -> None:
        coco["images"] = [{"id": 70, "file_name": "phone.jpg", "width": 400, "height": 300}]
        coco["annotations"] = []
        add_annotation_first(coco, 70, [40, 60, 160, 120])

    edit_split(coco_folder, "train", add_phone_photo)
    split = check_detection_data(coco_folder, workers=1).splits["train"]
    torch.manual_seed(0)
    pixels, target = TrainImages(split, detector_input_spec(128))[0]
    x0, y0, x1, y1 = (int(v) for v in target["boxes"][0].round())
    red = pixels[0].float() - pixels[1].float()
    inside = red[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].mean().item()
    assert inside > 100, (pixels.shape, (x0, y0, x1, y1))
    assert red.mean().item() < inside / 2


def add_annotation_first(coco: Coco, image_id: int, box: list[float]) -> None:
    coco["annotations"].append(
        {
            "id": 1,
            "image_id": image_id,
            "category_id": 5,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
        }
    )
