"""Metrics from counts, checked against hand computation."""

import pytest
import torch

from training.classification.metrics import Tally, compute_metrics, format_metrics, update_tally


def test_update_tally_counts_confusion_and_topk() -> None:
    confusion = torch.zeros(3, 3, dtype=torch.int64)
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([0, 2, 2, 2])
    hits = update_tally(confusion, logits, targets, k=2)
    assert confusion.tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert hits == 4  # with 3 classes, top-2 contains every target here
    assert update_tally(confusion, logits, targets, k=5) == 4  # k is capped at the classes


def test_compute_metrics_matches_hand_computation() -> None:
    # rows: true class; columns: predicted
    confusion = torch.tensor([[8, 2, 0], [1, 4, 0], [0, 0, 0]])
    metrics = compute_metrics(Tally(confusion, topk_correct=14, loss_sum=7.5), ("a", "b", "c"))
    assert metrics.count == 15
    assert metrics.top1 == pytest.approx(12 / 15)
    assert metrics.top5 == pytest.approx(14 / 15)
    assert metrics.loss == pytest.approx(0.5)
    precision_a, recall_a = 8 / 9, 8 / 10
    precision_b, recall_b = 4 / 6, 4 / 5
    f1_a = 2 * precision_a * recall_a / (precision_a + recall_a)
    f1_b = 2 * precision_b * recall_b / (precision_b + recall_b)
    assert metrics.per_class["a"]["precision"] == pytest.approx(precision_a)
    assert metrics.per_class["b"]["recall"] == pytest.approx(recall_b)
    assert metrics.per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    assert metrics.macro_f1 == pytest.approx((f1_a + f1_b + 0.0) / 3)
    evaluation = metrics.to_evaluation("toy", "test", "unit test")
    assert evaluation.values["top1"] == pytest.approx(0.8)
    assert evaluation.per_class is not None
    assert set(evaluation.per_class) == {"a", "b", "c"}
    assert "top-1 80.00%" in format_metrics(metrics, "toy")
