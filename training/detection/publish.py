"""Export a finished detector run folder (best.pt + metrics.json) into the model store.

The run writes its report first and is exported from what it wrote, so exporting later
(`python -m training.detection.publish --run runs/<name>`) gives the same archive and card.
"""

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.runtime.card import DetectionSpec, Evaluation, InputSpec, ModelCard
from training.core.checkpoint import BEST, load_checkpoint
from training.core.export import export_model, framework_versions
from training.core.publish import read_run_report
from training.detection.config import DetectionTrainConfig
from training.detection.data import ServedImages, load_split
from training.detection.models import DetectorConfig, ScriptableDetector, create_detector
from training.detection.report import REPORT_FILES

logger = logging.getLogger(__name__)


def export_detector_run(
    run_dir: Path,
    store: Path | None = None,
    parity_images: Sequence[torch.Tensor] = (),
    *,
    name: str | None = None,
    version: str | None = None,
) -> Path:
    """Export run_dir's best weights with a card built from its metrics.json; return the folder.

    `parity_images`: real images (uint8 CHW, as served) to compare eager and scripted on.
    Name, version and store default to the run's.
    """
    checkpoint = load_checkpoint(run_dir / BEST)
    config = DetectionTrainConfig.from_dict(checkpoint.config)
    detector_config = DetectorConfig(**checkpoint.extra["detector"])
    module = ScriptableDetector(create_detector(detector_config, weights="none"))
    module.load_state_dict(checkpoint.model)
    report = read_run_report(run_dir)
    source = f"visionserve training run {run_dir.name}"
    card = ModelCard.model_validate(
        {
            "name": name or config.model_name,
            "version": version or config.model_version,
            "task": "detect",
            "architecture": config.arch,
            "framework": framework_versions(),
            "labels": checkpoint.labels,
            "input": checkpoint.input_spec,
            "detection": DetectionSpec(score_threshold=config.score_threshold),
            "metrics": [
                _evaluation(report, report["split"], source),
                _evaluation(report, "val", source),
            ],
            "training": report["training"],
        }
    )
    directory = export_model(module.eval(), card, store or config.store, extra_inputs=parity_images)
    for report_file in REPORT_FILES:
        if (run_dir / report_file).is_file():
            shutil.copyfile(run_dir / report_file, directory / report_file)
    return directory


def _evaluation(report: dict[str, Any], split: str, source: str) -> Evaluation:
    values = dict(report[split])
    per_class = values.pop("per_class")
    return Evaluation(
        dataset=report["dataset"],
        split=split,
        source=source,
        values={key: round(float(value), 6) for key, value in values.items()},
        per_class={
            label: {k: round(float(v), 6) for k, v in row.items()}
            for label, row in per_class.items()
        },
    )


def main() -> None:
    """python -m training.detection.publish --run runs/<name> [--store models]."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.detection.publish")
    parser.add_argument("--run", type=Path, required=True, help="a detector run folder")
    parser.add_argument("--store", type=Path, help="default: the run's --store")
    parser.add_argument(
        "--data", type=Path, help="COCO folder whose val images join the parity check"
    )
    args = parser.parse_args()
    images: list[torch.Tensor] = []
    if args.data is not None:
        spec = InputSpec.model_validate(load_checkpoint(args.run / BEST).input_spec)
        served = ServedImages(load_split(args.data, "val"), spec)
        images = [served[i][0] for i in range(min(4, len(served)))]
    logger.info("exported %s", export_detector_run(args.run, args.store, images))


if __name__ == "__main__":
    main()
