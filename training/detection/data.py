"""COCO-format detection data: annotation JSON + image folder -> tensors with tv_tensors boxes.

Layout of a data folder: `annotations/instances_<split>.json` (or `annotations/<split>.json`)
and the images under `<split>/` (or beside the JSON's `file_name` paths from the folder root).
`builtin:scenes` generates such a folder first (training/detection/scenes.py).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from app.imaging import decode_image
from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size, preprocess_image
from training.core.datacheck import TRAINING_LIMITS, DatasetError
from training.detection.scenes import SceneConfig, generate_scenes

logger = logging.getLogger(__name__)

BACKGROUND = "__background__"
SCENES = "builtin:scenes"
SCENES_ROOT = Path("data/builtin")
Target = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CocoSplit:
    """One split: the parsed annotation file, where its images are, and the class names."""

    name: str
    annotation_file: Path
    image_root: Path
    coco: dict[str, Any]
    labels: tuple[str, ...]  # labels[0] is the background; category k -> label index
    category_to_label: dict[int, int]

    @property
    def images(self) -> list[dict[str, Any]]:
        """COCO `images` entries, in file order."""
        images: list[dict[str, Any]] = self.coco["images"]
        return images

    def path(self, index: int) -> Path:
        """The file of image `index`."""
        return self.image_root / str(self.images[index]["file_name"])

    def target(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (xyxy, pixels of the file) and label indices of image `index` (crowds skipped)."""
        image_id = self.images[index]["id"]
        rows = [a for a in self._by_image().get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in rows], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.category_to_label[a["category_id"]] for a in rows])
        return boxes, labels.to(torch.int64)

    def _by_image(self) -> dict[int, list[dict[str, Any]]]:
        cached: dict[int, list[dict[str, Any]]] | None = self.coco.get("_by_image")
        if cached is None:
            cached = {}
            for annotation in self.coco["annotations"]:
                cached.setdefault(annotation["image_id"], []).append(annotation)
            self.coco["_by_image"] = cached
        return cached


def resolve_source(source: str, scenes: SceneConfig | None = None, workers: int = 1) -> Path:
    """A data folder for `source`: the folder itself, or builtin:scenes generated once."""
    if source == SCENES:
        config = scenes or SceneConfig()
        root = SCENES_ROOT / f"scenes-s{config.seed}-{config.train}-{config.longer_side}"
        return generate_scenes(root, config, workers)
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{source}: no such folder (COCO layout or {SCENES})")
    return root


def annotation_file(root: Path, split: str) -> Path | None:
    """The annotation JSON of `split` under `root`, or None when the folder has no such split."""
    candidates = [
        root / "annotations" / f"instances_{split}.json",
        root / "annotations" / f"{split}.json",
        root / f"{split}.json",
    ]
    return next((path for path in candidates if path.is_file()), None)


def is_coco_source(source: str) -> bool:
    """Whether `source` names detection data: builtin:scenes or a COCO folder."""
    if source == SCENES:
        return True
    root = Path(source)
    return (root / "annotations").is_dir() or annotation_file(root, "train") is not None


def load_split(root: Path, split: str) -> CocoSplit:
    """Parse `split` of a COCO folder; labels follow sorted category ids."""
    path = annotation_file(root, split)
    if path is None:
        raise DatasetError(
            f"{root}: no annotations for split {split!r} "
            f"(looked for {root / 'annotations' / f'instances_{split}.json'})"
        )
    try:
        coco = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from error
    categories = sorted(coco.get("categories", []), key=lambda c: c["id"])
    if not categories:
        raise DatasetError(f'{path}: no categories; list them under "categories"')
    if not coco.get("images"):
        raise DatasetError(f'{path}: no images; list them under "images"')
    image_root = root / split if (root / split).is_dir() else root
    labels = (BACKGROUND, *(c["name"] for c in categories))
    mapping = {c["id"]: i for i, c in enumerate(categories, start=1)}
    return CocoSplit(split, path, image_root, coco, labels, mapping)


class TrainPreset:
    """Box-aware augmentation, ending at the card's longer-side size (transforms v2)."""

    def __init__(self, spec: InputSpec) -> None:
        self.transforms = v2.Compose(
            [
                v2.RandomPhotometricDistort(p=0.5),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.RandomZoomOut(fill=124, side_range=(1.0, 1.6))], p=0.2),
                v2.Resize(None, max_size=spec.resize_size, antialias=True),
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=2),
            ]
        )

    def __call__(
        self, image: Image.Image, boxes: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, Target]:
        """A random view of one image and its boxes."""
        size = (image.height, image.width)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size),
            "labels": labels,
        }
        pixels, target = self.transforms(tv_tensors.Image(F.pil_to_tensor(image)), target)
        return pixels.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
        }


class TrainImages(Dataset[tuple[torch.Tensor, Target]]):
    """Augmented training samples: uint8 CHW image and {boxes, labels} in its pixels."""

    def __init__(self, split: CocoSplit, spec: InputSpec) -> None:
        self.split = split
        self.preset = TrainPreset(spec)
        self.draft = draft_size(spec)

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        # The service's decoder: upright (EXIF applied) like the served image and the boxes the
        # service returns, and JPEG-drafted to the model's size, which divides the sides exactly.
        data = self.split.path(index).read_bytes()
        decoded = decode_image(data, TRAINING_LIMITS, self.draft)
        image = decoded.image
        boxes, labels = self.split.target(index)
        scale = torch.tensor([image.width / decoded.width, image.height / decoded.height] * 2)
        return self.preset(image, boxes * scale, labels)


class ServedImages(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Each image as the service sees it: file bytes -> decode_image -> preprocess_image.

    Yields the model's input, the factors (x, y) from its pixels back to the original image's,
    and the COCO image id, so predictions are scored against the untouched annotations.
    """

    def __init__(self, split: CocoSplit, spec: InputSpec) -> None:
        self.split = split
        self.spec = spec

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        data = self.split.path(index).read_bytes()
        decoded = decode_image(data, TRAINING_LIMITS, draft_size(self.spec))
        pixels = preprocess_image(decoded.image, self.spec)
        scale = torch.tensor(
            [decoded.width / pixels.shape[2], decoded.height / pixels.shape[1]] * 2
        )
        return pixels, scale, int(self.split.images[index]["id"])


def collate(batch: list[Any]) -> tuple[Any, ...]:
    """Images of different sizes stay a list: detection batches are lists, not stacks."""
    return tuple(zip(*batch, strict=True))
