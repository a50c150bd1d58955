"""`export_run(run_dir)`: a finished run of any task, from its best.pt, into the model store.

Every task exports from what its run wrote (best.pt and metrics.json), so exporting at the end
of `train` and exporting the folder later give the same archive and card.
"""

from pathlib import Path

from training.checkpoint import BEST, load_checkpoint
from training.detection.publish import export_detector_run
from training.publish import export_classifier_run


def export_run(
    run_dir: Path,
    store: Path | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Path:
    """Export the run folder's best checkpoint with its card; return the model folder."""
    task = load_checkpoint(run_dir / BEST).extra.get("task", "classify")
    if task == "detect":
        return export_detector_run(run_dir, store, name=name, version=version)
    return export_classifier_run(run_dir, store, name=name, version=version)
