"""The run's figures: counts beside rates, misclassified images named and titled in full."""

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from training.classification.data import load_split
from training.classification.metrics import Tally, compute_metrics
from training.classification.report import confusion_figure, misclassified_figure


def texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(match=Text) if isinstance(text, Text)]


def test_the_confusion_matrix_shows_counts_with_rates() -> None:
    confusion = torch.tensor([[14, 1, 0], [2, 3, 0], [0, 0, 0]])
    metrics = compute_metrics(Tally(confusion, 20, 1.0), ("bag", "shoe", "hat"))
    shown = texts(confusion_figure(metrics, "quick on photos test"))
    assert "0.93\n(14)" in shown
    assert "0.40\n(2)" in shown
    assert "0.00\n(0)" in shown  # a class with no images
    assert any("20 images; cells: rate, (count)" in text for text in shown)


def test_misclassified_titles_fit_and_name_the_files(fashion_folder: Path) -> None:
    classes, images = load_split(str(fashion_folder), "test")
    pictures = [torch.from_numpy(np.array(images.load(i).convert("L")))[None] for i in (0, 1)]
    captions = [f"{images.describe(i)}\n{classes[0]} -> {classes[1]}" for i in (0, 1)]
    title = "misclassified (2 of 9 shown): " + "a-long-model-name on a-long-data-set-name " * 4
    figure = misclassified_figure(pictures, captions, title)
    FigureCanvasAgg(figure)
    figure.tight_layout()  # as save_figure lays it out
    figure.draw_without_rendering()
    bounds = figure.bbox
    for text in [*figure.texts, *(axes.title for axes in figure.axes)]:
        extent = text.get_window_extent()
        assert bounds.x0 <= extent.x0 and extent.x1 <= bounds.x1, text.get_text()
        assert bounds.y0 <= extent.y0 and extent.y1 <= bounds.y1, text.get_text()
    shown = "".join(texts(figure)).replace("\n", "")
    assert Path(images.describe(0)).name in shown
    assert Path(images.describe(1)).name in shown
