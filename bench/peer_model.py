"""The shared peer benchmark's ResNet-18 as visionserve model folders (fp32, optionally int8).

`python -m bench.peer_model --out DIR [--int8]` builds exactly the model the peers serve (the
harness's own `workload.build_model()`: torchvision resnet18, weights=None, seed 0) and exports
it through `python -m training export` into the store DIR/fp32; `--int8` adds its int8 copy
through `export --quantize int8` into the store DIR/int8 (one model per store, so each server
loads, tunes and runs only the model it is measured on).

The weights are random, so no labelled data can measure what int8 costs: the int8 export is
scored against the fp32 archive's own top-1 on the harness photos (the folder
DIR/int8-data-fp32-top1-labels says so in the card), which turns the export's accuracy bound
into a bound on int8's disagreement with fp32. Both models are then checked on every harness
photo, through the service's decoder and preprocessing, against the harness's eager model:
reference top-5 labels found (what the harness's answer check counts), in DIR/peer-models.json.
"""

import argparse
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from app.imaging import decode_image
from app.runtime.card import InputSpec, Normalization
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel, load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from bench.ceiling import IMAGE_LIMITS
from training.cli import main as training_cli

logger = logging.getLogger(__name__)

HARNESS = Path("/work/shared/tools/peer-bench")
ARCH = "resnet18"
FP32_NAME = "resnet18-peer"
INT8_NAME = "resnet18-peer-int8"
INT8_DATA = "int8-data-fp32-top1-labels"
# The harness's input sets (prepare.py): 512x512 crops, served by default, and the originals.
INPUT_SETS = ("512", "orig")
TOP_K = 5


@dataclass(frozen=True, kw_only=True)
class PhotoCheck:
    """One harness photo: the served model's top-5 against the harness's eager reference."""

    photo: str
    reference: list[str]
    served: list[str]

    @property
    def found(self) -> int:
        """Reference labels among the served top-5 (the harness's answer check)."""
        return len(set(self.reference) & set(self.served))


class Workload(Protocol):
    """What the harness's workload.py defines and this module uses."""

    MEAN: list[float]
    STD: list[float]
    CATEGORIES: list[str]

    def build_model(self) -> nn.Module:
        """resnet18, weights=None, torch.manual_seed(0), eval mode."""
        ...

    def preprocess_bytes(self, data: bytes) -> torch.Tensor:
        """JPEG bytes -> normalised float tensor [3, 224, 224]."""
        ...

    def top5(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        """logits [1000] -> [{"label", "score"}] * 5."""
        ...


def load_workload(harness: Path) -> Workload:
    """The harness's workload.py, imported from its folder (model, preprocessing, labels)."""
    spec = importlib.util.spec_from_file_location("peer_workload", harness / "workload.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no workload.py in {harness}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast(Workload, module)


def expected_input(workload: Workload) -> InputSpec:
    """The harness's preprocessing as our card says it: shorter side 256, crop 224, bilinear."""
    mean, std = tuple(workload.MEAN), tuple(workload.STD)
    return InputSpec(
        resize_size=256,
        crop_size=224,
        interpolation="bilinear",
        normalization=Normalization(mean=mean, std=std),
    )


def export_fp32(workload: Workload, out: Path) -> LoadedModel:
    """Save the harness's model as a state dict, export it to DIR/models, load it back."""
    source = out / "source"
    source.mkdir(parents=True, exist_ok=True)
    weights, labels = source / f"{ARCH}-seed0.pt", source / "labels.txt"
    torch.save(workload.build_model().state_dict(), weights)
    labels.write_text("\n".join(workload.CATEGORIES) + "\n")
    store = out / "fp32"
    _run_training(
        ["export", "--arch", ARCH, "--weights", str(weights), "--labels", str(labels)],
        ["--name", FP32_NAME, "--out", str(store)],
    )
    loaded = load_model(store / FP32_NAME, torch.device("cpu"))
    if loaded.card.labels != tuple(workload.CATEGORIES):
        raise RuntimeError("the exported card's labels are not the harness's CATEGORIES")
    if loaded.card.input != expected_input(workload):
        raise RuntimeError(f"the card's input {loaded.card.input} is not the harness's")
    return loaded


def export_int8(
    fp32: LoadedModel, photos: list[Path], out: Path, *, variants: int, max_loss: float
) -> LoadedModel:
    """The int8 copy through `export --quantize int8`, calibrated on variants of the photos."""
    data = out / INT8_DATA
    shutil.rmtree(data, ignore_errors=True)
    calibration = write_int8_data(fp32, photos, data, variants)
    store = out / "int8"
    shutil.rmtree(store / INT8_NAME, ignore_errors=True)  # the export never replaces a folder
    fp32_folder = out / "fp32" / FP32_NAME
    _run_training(
        ["export", "--model", str(fp32_folder), "--quantize", "int8", "--data", str(data)],
        ["--name", INT8_NAME, "--out", str(store), "--calibration-images", str(calibration)],
        ["--max-accuracy-loss", str(max_loss), "--batch-size", "32", "--workers", "0"],
    )
    return load_model(store / INT8_NAME, torch.device("cpu"))


def write_int8_data(fp32: LoadedModel, photos: list[Path], data: Path, variants: int) -> int:
    """An ImageFolder labelled by the fp32 archive's own top-1; the calibration image count.

    test/: every harness photo unchanged (int8's top-1 on it is its agreement with fp32).
    train/: seeded crops, flips and colour changes of each photo, for the activation ranges
    only (their labels are the source photo's and unused).
    """
    augment = v2.Compose(
        [
            v2.RandomResizedCrop(320, scale=(0.25, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    )
    torch.manual_seed(0)
    count = 0
    for photo in photos:
        label = served_top5(fp32, photo.read_bytes())[0]
        if os.sep in label:
            raise RuntimeError(f"the label {label!r} cannot name a class folder")
        name = f"{photo.parent.name}-{photo.stem}"
        (data / "test" / label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, data / "test" / label / f"{name}.jpg")
        if photo.parent.name != INPUT_SETS[0]:
            continue  # the two sets are the same photos: draw variants from one of them
        (data / "train" / label).mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as image:
            for index in range(variants):
                augment(image.convert("RGB")).save(
                    data / "train" / label / f"{name}-{index:02d}.jpg", quality=90
                )
                count += 1
    return count


def served_top5(loaded: LoadedModel, data: bytes) -> list[str]:
    """Top-5 labels of JPEG bytes as /classify computes them (decoder, card, archive)."""
    spec = loaded.card.input
    decoded = decode_image(data, IMAGE_LIMITS, draft_size(spec))
    pixels = preprocess_image(decoded.image, spec).unsqueeze(0)
    with torch.inference_mode():
        logits, _ = split_outputs(loaded.module(pixels), loaded.card, 1)
    return [loaded.card.labels[i] for i in logits[0].topk(TOP_K).indices.tolist()]


def reference_top5(workload: Workload, model: nn.Module, data: bytes) -> list[str]:
    """Top-5 labels of JPEG bytes as the harness's eager model computes them."""
    with torch.inference_mode():
        logits = model(workload.preprocess_bytes(data).unsqueeze(0))[0]
    return [entry["label"] for entry in workload.top5(logits)]


def check_photos(loaded: LoadedModel, workload: Workload, photos: list[Path]) -> list[PhotoCheck]:
    """The served top-5 against the harness's eager top-5 on each photo."""
    model = workload.build_model()
    return [
        PhotoCheck(
            photo=f"{path.parent.name}/{path.name}",
            reference=reference_top5(workload, model, path.read_bytes()),
            served=served_top5(loaded, path.read_bytes()),
        )
        for path in photos
    ]


def harness_photos(inputs: Path) -> list[Path]:
    """The harness's input JPEGs (prepare.py writes them; setup.sh runs it)."""
    photos = [path for name in INPUT_SETS for path in sorted((inputs / name).glob("*.jpg"))]
    if not photos:
        raise FileNotFoundError(
            f"no harness inputs under {inputs}/{{{','.join(INPUT_SETS)}}}: run the harness's "
            "setup.sh (or prepare.py), or pass --inputs"
        )
    return photos


def summary(loaded: LoadedModel, store: Path, checks: list[PhotoCheck]) -> dict[str, Any]:
    """What one model folder is and how its answers compare with the harness's reference."""
    return {
        "model": loaded.card.name,
        "folder": str(store / loaded.card.name),
        "sha256": loaded.sha256,
        "precision": loaded.card.precision,
        "top1_equal": sum(c.served[0] == c.reference[0] for c in checks),
        "reference_labels_found": f"{sum(c.found for c in checks)}/{TOP_K * len(checks)}",
        "photos": [asdict(c) | {"found": c.found} for c in checks],
    }


def _run_training(*argv: list[str]) -> None:
    arguments = [item for part in argv for item in part]
    if training_cli(arguments) != 0:
        raise RuntimeError(f"python -m training {' '.join(arguments)} failed (see the log above)")


def _default_inputs() -> Path:
    # As the harness's env.sh: $BENCH_WORK, else peerbench-work in the system temp directory.
    work = os.environ.get("BENCH_WORK") or str(Path(tempfile.gettempdir()) / "peerbench-work")
    return Path(work) / "inputs"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_model", description=__doc__)
    add = parser.add_argument
    add("--out", type=Path, required=True, help="work folder; the stores are OUT/fp32, OUT/int8")
    add("--int8", action="store_true", help="also export the int8 copy")
    add("--harness", type=Path, default=HARNESS, help="the peer benchmark's folder")
    add("--inputs", type=Path, default=None, help="its inputs (default $BENCH_WORK/inputs)")
    add("--variants", type=int, default=16, help="int8 calibration images per photo")
    add(
        "--max-accuracy-loss",
        type=float,
        default=1.0,
        help="int8: points of top-1 lost against the fp32 archive's own top-1 on the 16 "
        "harness photos, i.e. the share of them int8 may answer differently (one photo is 6.25 "
        "points, so the default 1.0, the export's own, allows none)",
    )
    return parser


def main() -> None:
    """Build the folders, check them against the harness's model, print the summary."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    workload = load_workload(args.harness)
    photos = harness_photos(args.inputs or _default_inputs())
    fp32 = export_fp32(workload, args.out)
    models = [fp32]
    if args.int8:
        int8 = export_int8(
            fp32, photos, args.out, variants=args.variants, max_loss=args.max_accuracy_loss
        )
        models.append(int8)
    report = [
        summary(model, args.out / model.card.precision, check_photos(model, workload, photos))
        for model in models
    ]
    (args.out / "peer-models.json").write_text(json.dumps(report, indent=1) + "\n")
    for entry in report:
        print(
            f"{entry['model']}: {entry['folder']} top-1 equal {entry['top1_equal']}/"
            f"{len(photos)}, reference top-5 labels found {entry['reference_labels_found']}"
        )


if __name__ == "__main__":
    main()
