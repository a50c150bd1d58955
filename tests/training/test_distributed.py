"""DistributedDataParallel on CPU: two gloo processes launched by torchrun train one model."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.runtime.loader import load_model
from tests.conftest import ROOT
from tests.training.helpers import write_coco
from tests.training.segmentation_data import write_mask_folder


def test_torchrun_with_two_cpu_processes(fashion_folder: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "-m", "training", "train", "--data", str(fashion_folder), "--name", "ddp",
        "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "models"),
        "--epochs", "2", "--batch-size", "16", "--image-size", "24", "--max-per-class", "20",
        "--workers", "0", "--no-progress",
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "rank 1 of 2" in finished.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert [run.name for run in runs] == ["ddp"]  # only rank 0 writes
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    # Each rank scored its own shard; the reduced counts cover the split exactly once.
    assert metrics["test"]["images"] == 60
    assert metrics["training"]["machine"]["processes"] == 2
    rows = (runs[0] / "results.csv").read_text().splitlines()
    assert len(rows) == 3
    loaded = load_model(tmp_path / "models" / "ddp", torch.device("cpu"))
    assert loaded.card.labels == ("bag", "sandal", "shirt", "trouser")


def torchrun_train(name: str, arguments: list[str], tmp_path: Path) -> Path:
    """`training train` under torchrun with two gloo processes; its run folder, checked to be
    the only one (rank 0 writes) and to record two processes."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "-m", "training", "train", *arguments, "--epochs", "1", "--batch-size", "2",
        "--workers", "0", "--name", name, "--no-progress",
        "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "models"),
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "rank 1 of 2" in finished.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert [run.name for run in runs] == [name]  # only rank 0 writes
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["training"]["machine"]["processes"] == 2
    return runs[0]


def trained_images(run: Path) -> float:
    """Images the world trained in the run's one epoch, from its speed and time."""
    with (run / "results.csv").open() as file:
        (row,) = list(csv.DictReader(file))
    return float(row["images_per_s"]) * float(row["train_s"])


def test_torchrun_trains_a_detector_with_two_cpu_processes(tmp_path: Path) -> None:
    data = tmp_path / "coco"
    write_coco(data, "train", 8)
    write_coco(data, "val", 4)
    arguments = ["--data", str(data), "--arch", "fasterrcnn_mobilenet_v2", "--weights", "none",
                 "--image-size", "64", "--fpn-channels", "16"]  # fmt: skip
    run = torchrun_train("ddp-detector", arguments, tmp_path)
    # Each rank trained half of the 8 images; the epoch's speed counts the whole world's.
    assert trained_images(run) == pytest.approx(8, rel=1e-3)
    loaded = load_model(tmp_path / "models" / "ddp-detector", torch.device("cpu"))
    assert loaded.card.task == "detect"


def test_torchrun_trains_a_segmenter_with_two_cpu_processes(tmp_path: Path) -> None:
    data = write_mask_folder(tmp_path / "masks", {"train": 8, "val": 4, "test": 4})
    arguments = ["--data", str(data), "--weights", "none", "--image-size", "64"]
    run = torchrun_train("ddp-segmenter", arguments, tmp_path)
    # Each rank trained half of the 8 images; the epoch's speed counts the whole world's.
    assert trained_images(run) == pytest.approx(8, rel=1e-3)
    loaded = load_model(tmp_path / "models" / "ddp-segmenter", torch.device("cpu"))
    assert loaded.card.task == "segment"
