"""Run outputs: results.csv, metrics.json and PNG plots (Agg canvas, no display needed).

Figures are built with matplotlib's object API on an Agg canvas, never pyplot, so nothing here
touches global backend state or needs a screen.
"""

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from training.classification.metrics import ClassificationMetrics
from training.core.report import save_figure

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "curves.png"
MISCLASSIFIED_PNG = "misclassified.png"
_CAPTION_CHARACTERS = 30  # per line under a grid cell 2.2 inches wide, at 6 points


def plot_confusion(metrics: ClassificationMetrics, path: Path, title: str) -> None:
    """The confusion matrix as PNG (see confusion_figure)."""
    save_figure(confusion_figure(metrics, title), path)


def confusion_figure(metrics: ClassificationMetrics, title: str) -> Figure:
    """Row-normalised confusion matrix (each row: where that true class went), with counts.

    A rate alone hides how many images it rests on: 1.00 may be one image or a thousand.
    """
    confusion = torch.tensor(metrics.confusion, dtype=torch.float64)
    normalised = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(1)
    classes = len(metrics.labels)
    side = max(5.0, 0.7 * classes + 2)
    figure = Figure(figsize=(side + 1, side))
    axes = figure.add_subplot()
    image = axes.imshow(normalised.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = list(range(classes))
    axes.set_xticks(ticks, metrics.labels, rotation=45, ha="right")
    axes.set_yticks(ticks, metrics.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(
        f"{title}\ntop-1 {metrics.top1:.2%}, macro-F1 {metrics.macro_f1:.4f}, "
        f"{metrics.count} images; cells: rate, (count)"
    )
    if classes <= 30:
        for row in range(classes):
            for column in range(classes):
                value = float(normalised[row, column])
                axes.text(
                    column,
                    row,
                    f"{value:.2f}\n({int(confusion[row, column])})",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value > 0.5 else "black",
                )
    return figure


def plot_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss and top-1 per epoch, train against validation, plus the learning rate."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(13, 4))
    loss_axes, accuracy_axes, lr_axes = figure.subplots(1, 3)
    style = {"marker": "o", "markersize": 3}
    loss_axes.plot(epochs, [row["train_loss"] for row in history], label="train", **style)
    loss_axes.plot(epochs, [row["val_loss"] for row in history], label="val", **style)
    loss_axes.set_title("loss")
    accuracy_axes.plot(epochs, [row["train_top1"] for row in history], label="train", **style)
    accuracy_axes.plot(epochs, [row["val_top1"] for row in history], label="val", **style)
    accuracy_axes.set_title("top-1 accuracy")
    lr_axes.plot(epochs, [row["lr"] for row in history], **style)
    lr_axes.set_title("learning rate (end of epoch)")
    for axes in (loss_axes, accuracy_axes, lr_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    loss_axes.legend()
    accuracy_axes.legend()
    save_figure(figure, path)


def plot_misclassified(
    images: Sequence[torch.Tensor],
    captions: Sequence[str],
    path: Path,
    title: str,
) -> None:
    """The misclassified grid as PNG (see misclassified_figure)."""
    save_figure(misclassified_figure(images, captions, title), path)


def misclassified_figure(
    images: Sequence[torch.Tensor], captions: Sequence[str], title: str
) -> Figure:
    """A grid of uint8 CHW images, each captioned (file, then 'true -> predicted').

    The title and captions are wrapped to the figure's width, so neither is cut.
    """
    count = max(len(images), 1)
    columns = min(6, count)
    rows = math.ceil(count / columns)
    width = max(8.0, 2.2 * columns)
    figure = Figure(figsize=(width, 2.6 * rows + 0.8))
    figure.suptitle(textwrap.fill(title, int(width * 9)), fontsize=10)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        pixels = image.permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:
            axes.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            axes.imshow(pixels)
        lines = [textwrap.fill(line, _CAPTION_CHARACTERS) for line in caption.split("\n")]
        axes.set_title("\n".join(lines), fontsize=6)
        axes.axis("off")
    if not images:
        figure.text(0.5, 0.5, "no misclassified images", ha="center")
    return figure
