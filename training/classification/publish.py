"""A finished run's outputs: metrics and plots in the run folder, the model in the store."""

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runtime.card import Evaluation, InputSpec, ModelCard
from training.classification.config import TrainConfig
from training.classification.data import DataSplits
from training.classification.datacheck import DatasetReport
from training.classification.engine import Mistake
from training.classification.metrics import SUMMARY_KEYS, ClassificationMetrics
from training.classification.models import SMALL_CNNS, create_classifier
from training.classification.modules import (
    ExportedClassifier,
    NormalizedClassifier,
    exported_classifier,
    outputs_of,
)
from training.classification.report import (
    CONFUSION_PNG,
    CURVES_PNG,
    MISCLASSIFIED_PNG,
    plot_confusion,
    plot_curves,
    plot_misclassified,
)
from training.classification.transforms import EvalPreset
from training.core.checkpoint import BEST, Checkpoint, load_checkpoint
from training.core.config import ConfigError
from training.core.export import export_model, framework_versions
from training.core.publish import read_run_report
from training.core.report import METRICS_JSON, evaluation_record, write_json

logger = logging.getLogger(__name__)


REPORT_FILES = (METRICS_JSON, CONFUSION_PNG, CURVES_PNG, MISCLASSIFIED_PNG)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a run measured, ready to be written and put in a card."""

    config: TrainConfig
    data: DataSplits
    dataset_report: DatasetReport
    spec: InputSpec
    split: str
    final: ClassificationMetrics
    best_val: ClassificationMetrics
    history: list[dict[str, float]]
    training: dict[str, Any]
    watermark: dict[str, Any] | None = None  # the card's WatermarkSpec, when one was learned


def write_outputs(outcome: Outcome, mistakes: list[Mistake], run_dir: Path) -> None:
    """metrics.json, the confusion matrix, the curves and the misclassified grid."""
    write_json(
        {
            "dataset": outcome.data.dataset,
            "split": outcome.split,
            outcome.split: outcome.final.to_dict(),
            "val": outcome.best_val.to_dict(),
            "training": outcome.training,
        }
        | ({"watermark": outcome.watermark} if outcome.watermark else {}),
        run_dir / METRICS_JSON,
    )
    title = f"{outcome.config.model_name} on {outcome.data.dataset} {outcome.split}"
    plot_confusion(outcome.final, run_dir / CONFUSION_PNG, title)
    plot_curves(outcome.history, run_dir / CURVES_PNG)
    _, images = outcome.data.final
    preset = EvalPreset(outcome.spec)
    labels = outcome.data.classes
    pictures = [preset(images.load(mistake.position)) for mistake in mistakes]
    captions = [
        f"{_tail(images.describe(m.position))}\n{labels[m.target]} -> {labels[m.predicted]}"
        for m in mistakes
    ]
    confusion = outcome.final.confusion
    wrong = outcome.final.count - sum(confusion[i][i] for i in range(len(confusion)))
    shown = f"misclassified ({len(mistakes)} of {wrong} shown): {title}"
    plot_misclassified(pictures, captions, run_dir / MISCLASSIFIED_PNG, shown)


def _tail(text: str, limit: int = 60) -> str:
    """The end of a long path, where the class folder and file name are."""
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def export_classifier_run(
    run_dir: Path,
    store: Path | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Path:
    """Export a finished run's best.pt (logits and embedding) with a card from its metrics.json.

    The run's report is copied beside the model. Name, version and store default to the run's.
    """
    checkpoint = load_checkpoint(run_dir / BEST)
    config = TrainConfig.from_dict(checkpoint.config)
    report = read_run_report(run_dir)
    spec = InputSpec.model_validate(checkpoint.input_spec)
    module = _classifier_from(checkpoint, spec)
    source = f"visionserve training run {run_dir.name}"
    card = ModelCard(
        name=name or config.model_name,
        version=version or config.model_version,
        task="classify",
        architecture=checkpoint.arch,
        framework=framework_versions(),
        labels=checkpoint.labels,
        input=spec,
        metrics=(_evaluation(report, report["split"], source), _evaluation(report, "val", source)),
        training=report["training"],
        outputs=outputs_of(module),
        embedding_dim=module.embedding_dim,
        watermark=report.get("watermark"),
    )
    directory = export_model(module, card, store or config.store)
    for report_file in REPORT_FILES:
        shutil.copyfile(run_dir / report_file, directory / report_file)
    return directory


def _classifier_from(checkpoint: Checkpoint, spec: InputSpec) -> ExportedClassifier:
    """The checkpoint's model, rebuilt as training built it (grey SmallCNNs take one channel)."""
    in_channels = spec.channels if checkpoint.arch in SMALL_CNNS else 3
    created = create_classifier(checkpoint.arch, len(checkpoint.labels), "none", in_channels)
    normalization = spec.normalization
    if normalization is None:
        raise ConfigError("the checkpoint's input has no mean/std to export with")
    model = NormalizedClassifier(created.backbone, normalization.mean, normalization.std)
    model.load_state_dict(checkpoint.model)
    return exported_classifier(model, created.head)


def _evaluation(report: dict[str, Any], split: str, source: str) -> Evaluation:
    values = report[split]
    summary = {key: float(values[key]) for key in SUMMARY_KEYS}
    return evaluation_record(summary, values["per_class"], report["dataset"], split, source)
