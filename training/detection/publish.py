"""Export a finished detector run folder (best.pt + metrics.json) into the model store.

The run writes its report first and is exported from what it wrote, so exporting later
(`python -m training.detection.publish --run runs/<name>`) gives the same archive and card.
"""

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from app.runtime.card import DetectionSpec, InputSpec, ModelCard
from training.core.checkpoint import BEST, load_checkpoint
from training.core.export import export_model, framework_versions
from training.core.publish import copy_report_files, read_run_report, report_evaluation
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
                report_evaluation(report, report["split"], source),
                report_evaluation(report, "val", source),
            ],
            "training": report["training"],
        }
    )
    directory = export_model(module.eval(), card, store or config.store, extra_inputs=parity_images)
    copy_report_files(run_dir, directory, REPORT_FILES)
    return directory


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
