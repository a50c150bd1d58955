"""A finished run's outputs: metrics and plots in the run folder, the model in the store."""

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.runtime.card import CARD_FILENAME, Evaluation, InputSpec, ModelCard, parse_stored_card
from training.checkpoint import BEST, LAST, Checkpoint, load_checkpoint
from training.config import ConfigError, RunConfig, TrainConfig
from training.data import DataSplits
from training.datacheck import DatasetReport
from training.engine import Mistake
from training.export import export_model
from training.metrics import SUMMARY_KEYS, ClassificationMetrics, evaluation_record
from training.models import SMALL_CNNS, create_classifier, framework_versions
from training.modules import EmbeddingClassifier, NormalizedClassifier
from training.report import (
    CONFUSION_PNG,
    CURVES_PNG,
    METRICS_JSON,
    MISCLASSIFIED_PNG,
    plot_confusion,
    plot_curves,
    plot_misclassified,
    write_json,
)
from training.transforms import EvalPreset

logger = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT", bound=RunConfig)

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


def write_outputs(outcome: Outcome, mistakes: list[Mistake], run_dir: Path) -> None:
    """metrics.json, the confusion matrix, the curves and the misclassified grid."""
    write_json(
        {
            "dataset": outcome.data.dataset,
            "split": outcome.split,
            outcome.split: outcome.final.to_dict(),
            "val": outcome.best_val.to_dict(),
            "training": outcome.training,
        },
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
        outputs=("logits", "embedding"),
        embedding_dim=module.embedding_dim,
    )
    directory = export_model(module, card, store or config.store)
    for report_file in REPORT_FILES:
        shutil.copyfile(run_dir / report_file, directory / report_file)
    return directory


def read_run_report(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json (what its card's metrics come from), or a one-line refusal."""
    path = run_dir / METRICS_JSON
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no {METRICS_JSON}: the run did not finish; `python -m training "
            f"train --resume {run_dir / LAST}` completes it"
        )
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def _classifier_from(checkpoint: Checkpoint, spec: InputSpec) -> EmbeddingClassifier:
    """The checkpoint's model, rebuilt as training built it (grey SmallCNNs take one channel)."""
    in_channels = spec.channels if checkpoint.arch in SMALL_CNNS else 3
    created = create_classifier(checkpoint.arch, len(checkpoint.labels), "none", in_channels)
    normalization = spec.normalization
    if normalization is None:
        raise ConfigError("the checkpoint's input has no mean/std to export with")
    model = NormalizedClassifier(created.backbone, normalization.mean, normalization.std)
    model.load_state_dict(checkpoint.model)
    return EmbeddingClassifier(model, created.head).eval()


def _evaluation(report: dict[str, Any], split: str, source: str) -> Evaluation:
    values = report[split]
    summary = {key: float(values[key]) for key in SUMMARY_KEYS}
    return evaluation_record(summary, values["per_class"], report["dataset"], split, source)


def claim_store_name(config: ConfigT) -> ConfigT:
    """Refuse to replace models/<name> unless --overwrite; then give the new card a newer version.

    Checked before training, so hours of work never end in a silent overwrite or a refusal.
    """
    directory = config.store / config.model_name
    if not config.export or not directory.exists():
        return config
    card_file = directory / CARD_FILENAME
    existing = parse_stored_card(card_file.read_text()).version if card_file.is_file() else None
    version = next_version(existing, config.model_version)
    if not config.overwrite:
        raise ConfigError(
            f"{directory} already holds {config.model_name} {existing or '(no card)'}; pass "
            f"--overwrite to replace it (as version {version}), or choose another --name"
        )
    if version != config.model_version:
        logger.info("replacing %s %s with version %s", config.model_name, existing, version)
    return dataclasses.replace(config, model_version=version)


def next_version(existing: str | None, wanted: str) -> str:
    """`wanted`, unless the existing version is not older: then the existing one, bumped."""
    if existing is None:
        return wanted
    old, new = _version_key(existing), _version_key(wanted)
    if old is None or new is None:
        return wanted if wanted != existing else f"{existing}.1"
    if new > old:
        return wanted
    parts = existing.split(".")
    return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])


def _version_key(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(part) for part in parts) if all(p.isdigit() for p in parts) else None
