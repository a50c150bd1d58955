"""Tiny SmallCNN classifiers for the int8 tests: an fp32 export and its int8 form."""

from pathlib import Path

import torch

from app.runtime.card import InputSpec, ModelCard, Normalization, QuantizationSpec
from training.classification.models import create_classifier
from training.classification.modules import (
    ExportedClassifier,
    NormalizedClassifier,
    exported_classifier,
    outputs_of,
)
from training.classification.quantize import quantized_classifier
from training.core.export import export_model, framework_versions
from training.core.quantize import BACKEND, SCHEME

TINY_FP32 = "tiny-fashion"
TINY_INT8 = "tiny-fashion-int8"
# The four Fashion-MNIST classes of tests/training/helpers.FOLDER_CLASSES, in sorted order.
LABELS = ("bag", "sandal", "shirt", "trouser")
SIDE = 28


def tiny_fp32_module() -> ExportedClassifier:
    """A seeded SmallCNN with non-trivial batch norm, in its exported (explaining) form."""
    torch.manual_seed(0)
    created = create_classifier("smallcnn", len(LABELS), "none", in_channels=1)
    for module in created.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
            module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    classifier = NormalizedClassifier(created.backbone, (0.3,), (0.35,))
    return exported_classifier(classifier, "fc")


def tiny_fp32_card(module: ExportedClassifier, name: str = TINY_FP32) -> ModelCard:
    """Its card: grey 28 px images stretched, like fashion-products."""
    return ModelCard(
        name=name,
        version="1.0.0",
        task="classify",
        architecture="smallcnn",
        framework=framework_versions(),
        labels=LABELS,
        input=InputSpec(
            color_mode="L",
            resize_mode="stretch",
            resize_size=SIDE,
            normalization=Normalization(mean=(0.3,), std=(0.35,)),
        ),
        outputs=outputs_of(module),
        embedding_dim=module.embedding_dim,
        # How `train` would have split a folder: int8 calibration and `calibrate` re-draw it.
        training={"recipe": {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 0}},
    )


def export_tiny_fp32(store: Path) -> Path:
    """The fp32 classifier through the real exporter."""
    module = tiny_fp32_module()
    return export_model(module, tiny_fp32_card(module), store)


def calibration_batches(count: int = 1) -> list[torch.Tensor]:
    """Seeded random grey images (data-free: tests of serving and loading need no data set).

    One batch: the histogram observers cost about a second per call on a busy 2-core machine.
    """
    generator = torch.Generator().manual_seed(1)
    shape = (16, 1, SIDE, SIDE)
    return [
        torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator) for _ in range(count)
    ]


def int8_spec() -> QuantizationSpec:
    """A quantization record for cards built by hand (no held-out data measured)."""
    return QuantizationSpec(
        scheme=SCHEME,
        backend=BACKEND,
        calibration_data="random test images",
        calibration_images=16,
        reference_sha256="0" * 64,
        data="random test images",
        images=32,
        top1_fp32=0.5,
        top1_int8=0.5,
        agreement=1.0,
        max_loss=1.0,
    )


def export_tiny_int8(store: Path, name: str = TINY_INT8) -> Path:
    """The int8 form through the real exporter (its parity check against the int8 module)."""
    fp32 = tiny_fp32_module()
    int8 = quantized_classifier(fp32, calibration_batches())
    card = tiny_fp32_card(fp32, name).model_copy(
        update={"precision": "int8", "quantization": int8_spec()}
    )
    return export_model(int8, card, store, atol=1e-2)
