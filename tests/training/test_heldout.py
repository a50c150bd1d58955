"""`evaluate --split test` on a folder without test/: the split training drew, never the folder."""

from pathlib import Path

import pytest
import torch

from app.runtime.loader import load_model
from tests.training.helpers import quick_config
from training.classification.artifact import evaluate_artifact
from training.classification.trainer import RunResult, train
from training.core.datacheck import DatasetError
from training.core.export import rewrite_archive


@pytest.fixture(scope="module")
def flat_run(flat_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    tmp_path = tmp_path_factory.mktemp("flat-run")
    return train(quick_config(flat_folder, tmp_path, epochs=1, calibrate=False), "pytest")


def test_evaluate_scores_the_split_training_drew(flat_folder: Path, flat_run: RunResult) -> None:
    assert flat_run.model_dir is not None and flat_run.split == "test"
    evaluated = evaluate_artifact(
        flat_run.model_dir, str(flat_folder), "test", workers=0, progress=False
    )
    # 4 classes x 30 images: training held out 3 per class as test, not all 120.
    assert evaluated.metrics.count == flat_run.metrics.count == 12
    assert evaluated.metrics.top1 == pytest.approx(flat_run.metrics.top1)
    assert evaluated.split.startswith("test (stratified split (seed 0)")
    everything = evaluate_artifact(
        flat_run.model_dir, str(flat_folder), "all", workers=0, progress=False
    )
    assert everything.metrics.count == 120 and everything.split == "all"


def test_evaluate_refuses_when_the_card_records_no_split(
    flat_folder: Path, flat_run: RunResult
) -> None:
    assert flat_run.model_dir is not None
    loaded = load_model(flat_run.model_dir, torch.device("cpu"))
    card = loaded.card.model_copy(update={"training": {"weights": "none"}})
    rewrite_archive(loaded.module, card, flat_run.model_dir.parent)
    with pytest.raises(DatasetError, match=r"records no training split.*--split all"):
        evaluate_artifact(flat_run.model_dir, str(flat_folder), "test", workers=0, progress=False)
