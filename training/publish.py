"""A finished run's outputs: metrics and plots in the run folder, the model in the store."""

import dataclasses
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from app.runtime.card import CARD_FILENAME, InputSpec, ModelCard, parse_stored_card
from app.runtime.device import describe_device
from training.config import ConfigError, RunConfig, TrainConfig
from training.data import DataSplits
from training.datacheck import DatasetReport
from training.engine import Mistake
from training.export import export_model
from training.metrics import ClassificationMetrics
from training.models import framework_versions
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


@dataclass(frozen=True)
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
    captions = [f"{labels[m.target]} -> {labels[m.predicted]}" for m in mistakes]
    plot_misclassified(pictures, captions, run_dir / MISCLASSIFIED_PNG, f"misclassified: {title}")


def export_outcome(outcome: Outcome, model: NormalizedClassifier, head: str, run_dir: Path) -> Path:
    """Export the model (logits and embedding) with its card; copy the run's report beside it."""
    config = outcome.config
    module = EmbeddingClassifier(
        model.cpu().float().to(memory_format=torch.contiguous_format), head
    ).eval()
    source = f"visionserve training run {run_dir.name}"
    card = ModelCard(
        name=config.model_name,
        version=config.model_version,
        task="classify",
        architecture=config.arch,
        framework=framework_versions(),
        labels=outcome.data.classes,
        input=outcome.spec,
        metrics=(
            outcome.final.to_evaluation(outcome.data.dataset, outcome.split, source),
            outcome.best_val.to_evaluation(outcome.data.dataset, "val", source),
        ),
        training=outcome.training,
        outputs=("logits", "embedding"),
        embedding_dim=module.embedding_dim,
    )
    directory = export_model(module, card, config.store)
    for name in REPORT_FILES:
        shutil.copyfile(run_dir / name, directory / name)
    return directory


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


def machine_description(device: torch.device, world_size: int) -> dict[str, Any]:
    """Where the run happened, for the card."""
    return {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": describe_device(device),
        "processes": world_size,
        "platform": platform.platform(),
    }


def log_to(path: Path) -> logging.Handler:
    """Also write this run's log lines to the run folder."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def unique_run_dir(runs: Path, name: str) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... if taken."""
    candidate = runs / name
    suffix = 2
    while candidate.exists():
        candidate = runs / f"{name}-{suffix}"
        suffix += 1
    candidate.mkdir(parents=True)
    return candidate


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
