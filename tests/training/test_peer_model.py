"""bench/peer_model.py: the peer benchmark's ResNet-18, exported and loaded as the service does."""

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

from bench.peer_model import (
    FP32_NAME,
    INT8_DATA,
    expected_input,
    export_fp32,
    export_int8,
    reference_top5,
    served_top5,
)
from tests.images import encode, photo


class StandInWorkload:
    """The harness's workload.py rebuilt as it is written (the harness need not be here)."""

    def __init__(self) -> None:
        self.MEAN = [0.485, 0.456, 0.406]
        self.STD = [0.229, 0.224, 0.225]
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        self.CATEGORIES = list(weights.meta["categories"])
        self.transform = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(mean=self.MEAN, std=self.STD),
            ]
        )

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        model: nn.Module = torchvision.models.resnet18(weights=None)
        return model.eval()

    def preprocess_bytes(self, data: bytes) -> torch.Tensor:
        tensor: torch.Tensor = self.transform(Image.open(io.BytesIO(data)).convert("RGB"))
        return tensor

    def top5(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        scores, indices = torch.topk(logits.softmax(-1), 5)
        return [
            {"label": self.CATEGORIES[i], "score": float(s)}
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]


def test_the_export_loads_with_the_harness_labels_input_and_top5(tmp_path: Path) -> None:
    workload = StandInWorkload()
    loaded = export_fp32(workload, tmp_path)
    assert (tmp_path / "fp32" / FP32_NAME / "model.pt").is_file()
    assert loaded.card.labels == tuple(workload.CATEGORIES)
    assert loaded.card.input == expected_input(workload)
    assert loaded.card.precision == "fp32"
    # As the harness's 512 set: a photo cropped to 512x512, JPEG quality 90.
    jpeg = encode(photo("chelsea").resize((512, 512)), "JPEG", quality=90)
    served = served_top5(loaded, jpeg)
    reference = reference_top5(workload, workload.build_model(), jpeg)
    assert served[0] == reference[0]
    assert set(served) == set(reference)


@pytest.mark.slow
def test_the_int8_copy_is_rebuilt_from_the_state_dict_and_scored_against_fp32(
    tmp_path: Path,
) -> None:
    workload = StandInWorkload()
    fp32 = export_fp32(workload, tmp_path)
    photos = []
    for name in ("chelsea", "coffee"):
        path = tmp_path / "inputs" / "512" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(photo(name).resize((512, 512)), "JPEG", quality=90))
        photos.append(path)
    # Any loss allowed: this checks the path (rebuild, calibration, card), not a bound.
    int8 = export_int8(fp32, photos, tmp_path, variants=2, max_loss=100.0)
    spec = int8.card.quantization
    assert int8.card.precision == "int8" and spec is not None
    assert spec.reference_sha256 == fp32.sha256
    assert spec.images == len(photos) and spec.calibration_images == 2 * len(photos)
    assert spec.top1_fp32 == 1.0  # labelled by the fp32 archive's own top-1
    assert spec.top1_int8 == spec.agreement
    assert INT8_DATA in spec.data
