"""Plots of a calibrated classifier's decisions: reliability diagram, accuracy vs rejection."""

from collections.abc import Mapping
from pathlib import Path

import torch
from matplotlib.figure import Figure

from training.classification.calibration import ECE_BINS
from training.core.report import save_figure

RELIABILITY_PNG = "reliability.png"
REJECTION_PNG = "rejection.png"


def plot_reliability(
    curves: Mapping[str, torch.Tensor], targets: torch.Tensor, path: Path, title: str
) -> None:
    """Accuracy against confidence per bin, a line per set of probabilities (before/after)."""
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for name, probabilities in curves.items():
        confidence, accuracy, counts = reliability_bins(probabilities, targets)
        used = counts > 0
        axes.plot(confidence[used], accuracy[used], marker="o", label=name)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.legend(loc="upper left")
    save_figure(figure, path)


def reliability_bins(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = ECE_BINS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean confidence, accuracy and count per equal-width confidence bin (the ECE's bins)."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).double()
    index = (confidence * bins).long().clamp(max=bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    mean_confidence = torch.bincount(index, confidence.double(), minlength=bins) / counts.clamp(1)
    accuracy = torch.bincount(index, correct, minlength=bins) / counts.clamp(1)
    return mean_confidence, accuracy, counts


def plot_rejection(
    rankings: Mapping[str, torch.Tensor], correct: torch.Tensor, path: Path, title: str
) -> None:
    """Accuracy on the images kept when the most doubtful share is set aside.

    `rankings` maps a name to a doubt score per known image (higher = set aside first).
    """
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    for name, doubt in rankings.items():
        rates, accuracy = rejection_curve(doubt, correct)
        axes.plot(rates.numpy(), accuracy.numpy(), label=name)
    axes.set_xlabel("share of known images set aside")
    axes.set_ylabel("accuracy on the rest")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    save_figure(figure, path)


def rejection_curve(
    doubt: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rejection rate, accuracy of the kept images) for every number of images set aside."""
    order = doubt.argsort()  # most confident first
    kept_correct = correct[order].double().cumsum(0)
    kept = torch.arange(1, len(order) + 1, dtype=torch.float64)
    accuracy = (kept_correct / kept).flip(0)
    rates = 1.0 - kept.flip(0) / len(order)
    return rates, accuracy
