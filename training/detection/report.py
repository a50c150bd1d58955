"""A finished detector run: metrics.json, PR curves, a predictions grid, training curves."""

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from training.core.report import METRICS_JSON, RESULTS_CSV, run_record, write_json
from training.core.session import machine_description
from training.detection.metrics import RECALL_POINTS, DetectionMetrics, format_detection_metrics
from training.detection.run import DetectionRun

logger = logging.getLogger(__name__)

PR_CURVE_PNG = "pr_curve.png"
PREDICTIONS_PNG = "predictions.png"
CURVES_PNG = "curves.png"
REPORT_FILES = (METRICS_JSON, RESULTS_CSV, PR_CURVE_PNG, PREDICTIONS_PNG, CURVES_PNG)
_GRID_IMAGES = 12

Evaluator = Callable[[DetectionRun, str], tuple[DetectionMetrics, list[dict[str, Any]]]]


def finish_run(run: DetectionRun, command: str, total_s: float, evaluate: Evaluator) -> None:
    """Score the best weights on test (or val) (all ranks); rank 0 writes metrics.json, plots."""
    split = "test" if "test" in run.splits else "val"
    final, detections = evaluate(run, split)
    best_val, _ = evaluate(run, "val")
    if not run.context.is_main:
        return
    logger.info("%s", format_detection_metrics(final, f"best epoch on {split}"))
    training = training_record(run, command, total_s)
    dataset = run.config.data
    payload = {
        "dataset": dataset,
        "split": split,
        split: final.to_dict(),
        "val": best_val.to_dict(),
        "training": training,
    }
    write_json(payload, run.run_dir / METRICS_JSON)
    title = f"{run.config.model_name} on {dataset} {split}"
    plot_pr_curves(final, run.run_dir / PR_CURVE_PNG, title)
    plot_detection_curves(run.state.history, run.run_dir / CURVES_PNG)
    data = run.splits[split]
    paths = [data.path(i) for i in range(min(_GRID_IMAGES, len(data.images)))]
    ids = [data.images[i]["id"] for i in range(len(paths))]
    names = {category: data.labels[k] for category, k in data.category_to_label.items()}
    plot_predictions(
        paths,
        ids,
        data.coco["annotations"],
        detections=detections,
        names=names,
        threshold=run.config.score_threshold,
        path=run.run_dir / PREDICTIONS_PNG,
    )


def training_record(run: DetectionRun, command: str, total_s: float) -> dict[str, Any]:
    """What the card says about how the model was made."""
    return {
        **run_record(run.state, command, total_s, speed_digits=2),
        "weights": f"{run.config.weights} (MobileNet_V2_Weights.IMAGENET1K_V1 backbone)",
        "machine": machine_description(run.settings.device, run.context.world_size),
        "data": {
            "source": run.config.data,
            "counts": {name: len(s.images) for name, s in run.splits.items()},
            "unreadable_files": len(run.dataset_report.unreadable),
            "dropped_annotations": sum(run.dataset_report.dropped.values()),
        },
        "detector": {k: v for k, v in vars(run.detector_config).items()},
        "recipe": run.config.to_dict(),
        "run": run.run_dir.name,
    }


def plot_pr_curves(metrics: DetectionMetrics, path: Path, title: str) -> None:
    """Precision against recall at IoU 0.5, one line per class."""
    figure = Figure(figsize=(7, 5.5))
    axes = figure.add_subplot()
    for label, precision in metrics.pr_curves.items():
        ap50 = metrics.per_class[label]["ap50"]
        axes.plot(RECALL_POINTS, precision, label=f"{label} ({ap50:.3f})")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left", title="class (AP@.5)")
    axes.set_title(f"{title}\nmAP@.5 {metrics.map50:.4f}, mAP@[.5:.95] {metrics.map:.4f}")
    _save(figure, path)


def plot_detection_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Training loss, validation mAP and the learning rate per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(13, 4))
    loss_axes, map_axes, lr_axes = figure.subplots(1, 3)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_axes.set_title("training loss")
    map_axes.plot(epochs, [row["val_map50"] for row in history], marker="o", label="mAP@.5")
    map_axes.plot(epochs, [row["val_map"] for row in history], marker="o", label="mAP@[.5:.95]")
    map_axes.set_title("validation mAP")
    map_axes.legend()
    lr_axes.plot(epochs, [row["lr"] for row in history], marker="o")
    lr_axes.set_title("learning rate (end of epoch)")
    for axes in (loss_axes, map_axes, lr_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    _save(figure, path)


def plot_predictions(
    paths: Sequence[Path],
    image_ids: Sequence[int],
    annotations: Sequence[dict[str, Any]],
    *,
    detections: Sequence[dict[str, Any]],
    names: dict[int, str],
    threshold: float,
    path: Path,
) -> None:
    """Test images with ground truth (dashed white) and detections above `threshold` (red)."""
    columns = min(4, max(len(paths), 1))
    rows = max(1, math.ceil(len(paths) / columns))
    figure = Figure(figsize=(4 * columns, 3.3 * rows + 0.4))
    figure.suptitle(f"ground truth (dashed) and detections with score >= {threshold}")
    for index, (file, image_id) in enumerate(zip(paths, image_ids, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        with Image.open(file) as image:
            axes.imshow(image.convert("RGB"))
        for item in annotations:
            if item["image_id"] == image_id:
                x, y, w, h = item["bbox"]
                axes.add_patch(Rectangle((x, y), w, h, fill=False, ec="white", ls="--", lw=1))
        for item in detections:
            if item["image_id"] == image_id and item["score"] >= threshold:
                x, y, w, h = item["bbox"]
                axes.add_patch(Rectangle((x, y), w, h, fill=False, ec="red", lw=1.5))
                axes.text(
                    x,
                    y,
                    f"{names.get(item['category_id'], '?')} {item['score']:.2f}",
                    color="white",
                    fontsize=6,
                    backgroundcolor="red",
                )
        axes.axis("off")
    _save(figure, path)


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
