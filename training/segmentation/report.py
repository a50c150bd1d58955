"""A finished segmenter run: metrics.json, per-class IoU bars, predictions grid, curves."""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from app.runtime.preprocessing import preprocess_image
from app.runtime.segmentation import class_map
from app.services.masks import palette
from training.core.report import METRICS_JSON, RESULTS_CSV, run_record, save_figure, write_json
from training.core.session import machine_description
from training.segmentation.data import IGNORE_INDEX, SegmentationSplit
from training.segmentation.metrics import SegmentationMetrics, format_segmentation_metrics
from training.segmentation.run import SegmentationRun

logger = logging.getLogger(__name__)

IOU_PNG = "per_class_iou.png"
PREDICTIONS_PNG = "predictions.png"
CURVES_PNG = "curves.png"
REPORT_FILES = (METRICS_JSON, RESULTS_CSV, IOU_PNG, PREDICTIONS_PNG, CURVES_PNG)
_GRID_IMAGES = 6
_OVERLAY_ALPHA = 0.55

Evaluator = Callable[[SegmentationRun, str], SegmentationMetrics]


def finish_run(run: SegmentationRun, command: str, total_s: float, evaluate: Evaluator) -> None:
    """Score the best weights on test (or val) (all ranks); rank 0 writes metrics.json, plots."""
    split = "test" if "test" in run.splits else "val"
    final = evaluate(run, split)
    best_val = evaluate(run, "val")
    if not run.context.is_main:
        return
    logger.info("%s", format_segmentation_metrics(final, f"best epoch on {split}"))
    payload = {
        "dataset": run.config.data,
        "split": split,
        split: final.to_dict(),
        "val": best_val.to_dict(),
        "training": training_record(run, command, total_s),
    }
    write_json(payload, run.run_dir / METRICS_JSON)
    title = f"{run.config.model_name} on {run.config.data} {split}"
    plot_class_iou(final, run.run_dir / IOU_PNG, title)
    plot_segmentation_curves(run.state.history, run.run_dir / CURVES_PNG)
    model = run.module.eval()
    plot_predictions(
        run.splits[split],
        range(min(_GRID_IMAGES, len(run.splits[split]))),
        lambda image: predict_map(model, image, run),
        run.run_dir / PREDICTIONS_PNG,
    )


def predict_map(model: torch.nn.Module, image: Image.Image, run: SegmentationRun) -> np.ndarray:
    """The class map the service would answer for `image` (upright RGB)."""
    with torch.inference_mode():
        logits = model(preprocess_image(image, run.spec)[None].to(run.settings.device))
    return class_map(logits[0].float().cpu(), image.height, image.width).numpy()


def training_record(run: SegmentationRun, command: str, total_s: float) -> dict[str, Any]:
    """What the card says about how the model was made."""
    return {
        **run_record(run.state, command, total_s, speed_digits=2),
        "weights": f"{run.config.weights} (MobileNet_V2_Weights.IMAGENET1K_V1 backbone)",
        "machine": machine_description(run.settings.device, run.context.world_size),
        "data": {
            "source": run.config.data,
            "counts": {name: len(split) for name, split in run.splits.items()},
            "left_out": {kind: len(v) for kind, v in run.dataset_report.problems.items()},
        },
        "segmenter": dict(vars(run.segmenter_config)),
        "recipe": run.config.to_dict(),
        "run": run.run_dir.name,
    }


def plot_class_iou(metrics: SegmentationMetrics, path: Path, title: str) -> None:
    """One bar per class: IoU, with the class's share of the pixels under it."""
    labels = list(metrics.per_class)
    values = [metrics.per_class[label]["iou"] or 0.0 for label in labels]
    figure = Figure(figsize=(max(6, 0.8 * len(labels) + 2), 4.5))
    axes = figure.add_subplot()
    bars = axes.bar(labels, values, color="#4c78a8")
    for bar, label in zip(bars, labels, strict=True):
        share = metrics.per_class[label]["pixel_share"] or 0.0
        axes.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + 0.01,
            f"{bar.get_height():.2f}\n{share:.1%} px",
            ha="center",
            fontsize=7,
        )
    axes.axhline(metrics.miou, color="red", ls="--", lw=1, label=f"mIoU {metrics.miou:.3f}")
    axes.set_ylim(0, 1.12)
    axes.set_ylabel("IoU")
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="upper right")
    axes.set_title(f"{title}\npixel accuracy {metrics.pixel_accuracy:.3f}")
    save_figure(figure, path)


def overlay(image: Image.Image, mask: np.ndarray) -> np.ndarray:
    """The photo with each non-background class painted over it in its palette colour."""
    colours = np.array(palette(), dtype=np.float32).reshape(256, 3)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    painted = (mask > 0) & (mask != IGNORE_INDEX)
    blended = pixels.copy()
    blended[painted] = (1 - _OVERLAY_ALPHA) * pixels[painted] + _OVERLAY_ALPHA * colours[
        mask[painted]
    ]
    return blended.astype(np.uint8)


def plot_predictions(
    split: SegmentationSplit,
    indices: Sequence[int],
    predict: Callable[[Image.Image], np.ndarray],
    path: Path,
) -> None:
    """Per image: the photo, the ground truth over it, the prediction over it."""
    rows = max(1, len(indices))
    figure = Figure(figsize=(10, 2.6 * rows + 0.5))
    figure.suptitle("photo | ground truth | prediction (colours: class ids, legend below)")
    for row, index in enumerate(indices):
        image = split.image(index)
        truth, predicted = split.mask(index), predict(image)
        panels = (np.asarray(image), overlay(image, truth), overlay(image, predicted))
        for column, panel in enumerate(panels):
            axes = figure.add_subplot(rows, 3, row * 3 + column + 1)
            axes.imshow(panel)
            axes.axis("off")
    _legend(figure, split.labels)
    save_figure(figure, path)


def _legend(figure: Figure, labels: Sequence[str]) -> None:
    colours = np.array(palette(), dtype=np.float32).reshape(256, 3) / 255
    handles = [Patch(color=colours[i], label=label) for i, label in enumerate(labels) if i > 0]
    figure.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7)


def plot_segmentation_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Training loss, validation mIoU and the learning rate per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(13, 4))
    loss_axes, miou_axes, lr_axes = figure.subplots(1, 3)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_axes.set_title("training loss")
    miou_axes.plot(epochs, [row["val_miou"] for row in history], marker="o", label="mIoU")
    miou_axes.plot(
        epochs, [row["val_pixel_accuracy"] for row in history], marker="o", label="pixel acc"
    )
    miou_axes.set_title("validation")
    miou_axes.legend()
    lr_axes.plot(epochs, [row["lr"] for row in history], marker="o")
    lr_axes.set_title("learning rate (end of epoch)")
    for axes in (loss_axes, miou_axes, lr_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    save_figure(figure, path)
