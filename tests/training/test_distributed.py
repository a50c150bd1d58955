"""DistributedDataParallel on CPU: two gloo processes launched by torchrun train one model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from app.runtime.loader import load_model
from tests.conftest import ROOT


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
