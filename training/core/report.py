"""The run folder's files every task writes: results.csv, metrics.json, the card's records, PNGs."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.runtime.card import Evaluation
from training.core.checkpoint import TrainState

RESULTS_CSV = "results.csv"


METRICS_JSON = "metrics.json"


def write_results_csv(history: Sequence[dict[str, float]], path: Path) -> None:
    """One row per epoch, columns in first-seen order."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: round(value, 6) for key, value in row.items()} for row in history)


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def save_figure(figure: Figure, path: Path) -> None:
    """Lay out and write a figure as PNG (Agg, no display)."""
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def run_record(
    state: TrainState, command: str, total_s: float, speed_digits: int
) -> dict[str, Any]:
    """How long a run took and how fast it trained, for the card's `training` record."""
    history = state.history
    images = sum(row["images_per_s"] * row["train_s"] for row in history)
    train_s = sum(row["train_s"] for row in history)
    return {
        "command": command,
        "wall_time_s": round(state.wall_time_s, 1),
        "process_time_s": round(total_s, 1),
        "images_per_s": round(images / max(train_s, 1e-9), speed_digits),
        "epochs": len(history),
        "best_epoch": state.best_epoch + 1,
    }


def evaluation_record(
    summary: dict[str, float],
    per_class: dict[str, dict[str, float]],
    dataset: str,
    split: str,
    source: str,
) -> Evaluation:
    """The card's record of an evaluation (classification or detection), rounded for JSON."""
    return Evaluation(
        dataset=dataset,
        split=split,
        values={key: round(value, 6) for key, value in summary.items()},
        source=source,
        per_class={
            label: {key: round(value, 6) for key, value in row.items()}
            for label, row in per_class.items()
        },
    )
