"""The model store's names and versions, and a finished run's metrics.json, for every task."""

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from app.runtime.card import CARD_FILENAME, Evaluation, parse_stored_card
from app.runtime.store import VERSION_SEPARATOR, version_key
from training.core.checkpoint import LAST
from training.core.config import ConfigError, RunConfig
from training.core.report import METRICS_JSON, evaluation_record

logger = logging.getLogger(__name__)


ConfigT = TypeVar("ConfigT", bound=RunConfig)


def claim_store_name(config: ConfigT) -> ConfigT:
    """Refuse to replace models/<name> unless --overwrite; then give the new card a newer version.

    Versions served side by side (`models/<name>@<version>/`) count too: the new version is
    never one the store already holds, so no two folders claim one name and version.
    Checked before training, so hours of work never end in a silent overwrite or a refusal.
    """
    directory = config.store / config.model_name
    if not config.export:
        return config
    versions = stored_versions(config.store, config.model_name)
    highest = max(versions, key=version_key) if versions else None
    if not directory.exists() and config.model_version not in versions:
        return config
    card_file = directory / CARD_FILENAME
    existing = parse_stored_card(card_file.read_text()).version if card_file.is_file() else None
    version = next_version(highest or existing, config.model_version)
    if not config.overwrite:
        holder = directory if directory.exists() else config.store / versions[config.model_version]
        held = existing if directory.exists() else config.model_version
        raise ConfigError(
            f"{holder} already holds {config.model_name} {held or '(no card)'}; pass "
            f"--overwrite to replace it (as version {version}), or choose another --name"
        )
    if version != config.model_version:
        logger.info("replacing %s %s with version %s", config.model_name, existing, version)
    return dataclasses.replace(config, model_version=version)


def stored_versions(store: Path, name: str) -> dict[str, str]:
    """Every version of `name` in the store (`<name>/` and `<name>@<version>/`): its folder."""
    folders = [store / name, *sorted(store.glob(f"{name}{VERSION_SEPARATOR}*"))]
    versions = {}
    for folder in folders:
        card_file = folder / CARD_FILENAME
        if card_file.is_file():
            versions[parse_stored_card(card_file.read_text()).version] = folder.name
    return versions


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


def report_evaluation(report: dict[str, Any], split: str, source: str) -> Evaluation:
    """The card's record of one split of a run's metrics.json; a per-class value the split could
    not give (a class absent from it) is left out."""
    values = dict(report[split])
    per_class = values.pop("per_class")
    return evaluation_record(
        {key: float(value) for key, value in values.items()},
        {
            label: {key: float(value) for key, value in row.items() if value is not None}
            for label, row in per_class.items()
        },
        report["dataset"],
        split,
        source,
    )


def copy_report_files(run_dir: Path, directory: Path, names: Sequence[str]) -> None:
    """The run's report files that exist (metrics, curves, figures), beside the exported model."""
    for name in names:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, directory / name)
