"""The detector run: data, model, epochs with validation mAP and early stopping, test, export."""

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from app.runtime.card import InputSpec, Normalization
from app.runtime.device import resolve_device
from training.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    TrainState,
    save_checkpoint,
    weights_on_cpu,
)
from training.detection.config import DetectionTrainConfig
from training.detection.data import CocoSplit, ServedImages, TrainImages, collate, resolve_source
from training.detection.datacheck import (
    CheckedDetectionData,
    DetectionReport,
    check_detection_data,
    format_report,
    validate_detection,
)
from training.detection.engine import predict, train_one_epoch
from training.detection.metrics import DetectionMetrics, coco_metrics
from training.detection.models import DetectorConfig, ScriptableDetector, create_detector
from training.detection.publish import export_run
from training.detection.report import finish_run
from training.detection.scenes import SceneConfig
from training.engine import StepSettings, Updater
from training.models import IMAGENET_MEAN, IMAGENET_STD
from training.publish import unique_run_dir
from training.recipe import lr_factor, seed_everything
from training.report import RESULTS_CSV, write_json, write_results_csv

logger = logging.getLogger(__name__)

_PARITY_IMAGES = 4


@dataclass
class DetectionRun:
    """Everything one detector training process holds."""

    config: DetectionTrainConfig
    splits: dict[str, CocoSplit]
    dataset_report: DetectionReport
    spec: InputSpec
    detector_config: DetectorConfig
    module: ScriptableDetector
    loader: DataLoader[tuple[torch.Tensor, dict[str, torch.Tensor]]]
    optimization: Updater
    settings: StepSettings
    state: TrainState
    run_dir: Path
    best_weights: dict[str, torch.Tensor]


def train_detector(
    config: DetectionTrainConfig, command: str, resume: Checkpoint | None = None,
    resume_dir: Path | None = None,
) -> Path | None:  # fmt: skip
    """Run the whole recipe; return the exported model folder (None with --no-export)."""
    started = time.perf_counter()
    run = _setup(config, resume, resume_dir)
    handler = logging.FileHandler(run.run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        _fit(run)
        run.module.load_state_dict(run.best_weights)
        finish_run(run, command, time.perf_counter() - started, evaluate_split)
        if not config.export:
            return None
        served = ServedImages(run.splits["val"], run.spec)
        images = [served[i][0] for i in range(min(_PARITY_IMAGES, len(served)))]
        return export_run(run.run_dir, config.store, images)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def detector_input_spec(image_size: int) -> InputSpec:
    """Longer side scaled down to image_size; ImageNet mean/std applied inside the model."""
    return InputSpec(
        color_mode="RGB", resize_mode="longer_side", resize_size=image_size,
        normalization=Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )  # fmt: skip


def _setup(
    config: DetectionTrainConfig, resume: Checkpoint | None, resume_dir: Path | None
) -> DetectionRun:
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=False)
    data = _checked_data(config)
    splits = data.splits
    labels = splits["train"].labels
    spec = detector_input_spec(config.image_size)
    detector_config = DetectorConfig(config.arch, len(labels), config.image_size,
                                     config.fpn_channels, config.trainable_layers)  # fmt: skip
    weights = "none" if resume is not None else config.weights
    module = ScriptableDetector(create_detector(detector_config, weights))
    if resume is not None:
        module.load_state_dict(resume.model)
    device = resolve_device(config.device)
    module.to(device)
    cuda = device.type == "cuda"
    amp = config.amp == "on" or (config.amp == "auto" and cuda)
    settings = StepSettings(device, torch.bfloat16 if amp else None, False, config.clip_grad_norm,
                            config.progress)  # fmt: skip
    loader = _train_loader(config, splits["train"], spec, cuda)
    optimization = _optimization(config, module, len(loader), resume, device)
    state = resume.state if resume is not None else TrainState()
    state.stale_epochs = 0
    run_dir = resume_dir or unique_run_dir(config.runs, config.model_name)
    best = weights_on_cpu(module)
    if resume_dir is not None and (resume_dir / BEST).is_file():
        best = dict(torch.load(resume_dir / BEST, map_location="cpu", weights_only=True)["model"])
    return DetectionRun(config, splits, data.report, spec, detector_config, module, loader,
                        optimization, settings, state, run_dir, best)  # fmt: skip


def _checked_data(config: DetectionTrainConfig) -> CheckedDetectionData:
    """The data folder (builtin:scenes generated first), checked: training reads what passed."""
    scenes = SceneConfig(seed=config.seed, train=config.scenes, val=max(8, config.scenes // 10),
                         test=max(8, config.scenes * 3 // 20))  # fmt: skip
    root = resolve_source(config.data, scenes, workers=max(1, config.workers))
    data = check_detection_data(root, config.workers or 4)
    validate_detection(data.report)
    return data


def _train_loader(
    config: DetectionTrainConfig, split: CocoSplit, spec: InputSpec, pin: bool
) -> DataLoader[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    dataset: torch.utils.data.Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]] = TrainImages(
        split, spec
    )
    if config.max_images is not None:
        dataset = Subset(dataset, range(min(config.max_images, len(split.images))))
    count = min(config.max_images or len(split.images), len(split.images))
    return DataLoader(
        dataset, config.batch_size, shuffle=True, num_workers=config.workers,
        collate_fn=collate, pin_memory=pin, drop_last=count > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed), persistent_workers=config.workers > 0,
    )  # fmt: skip


def _optimization(
    config: DetectionTrainConfig, module: torch.nn.Module, steps_per_epoch: int,
    resume: Checkpoint | None, device: torch.device,
) -> Updater:  # fmt: skip
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 autocast needs no scaling
    step = 0
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scaler.load_state_dict(resume.scaler)
        step = resume.state.step
    total, warmup = config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio), last_epoch=step - 1
    )
    return Updater(optimizer, scheduler, scaler)


def evaluate_split(
    run: DetectionRun, split: str
) -> tuple[DetectionMetrics, list[dict[str, object]]]:
    """mAP of the current weights on `split`, through the service's decode and preprocessing."""
    data = run.splits[split]
    loader = DataLoader(ServedImages(data, run.spec), batch_size=8, num_workers=run.config.workers,
                        collate_fn=collate)  # fmt: skip
    categories = [0, *sorted(data.category_to_label, key=data.category_to_label.__getitem__)]
    detections = predict(run.module, loader, categories, device=run.settings.device,
                         progress=run.config.progress, description=split)  # fmt: skip
    return coco_metrics(data.coco, detections, data.labels), detections


def _fit(run: DetectionRun) -> None:
    config, state = run.config, run.state
    logger.info("%s", format_report(run.dataset_report))
    (run.run_dir / "config.json").write_text(config.to_json())
    write_json(run.dataset_report.to_dict(), run.run_dir / "dataset.json")
    for epoch in range(state.epoch, config.epochs):
        started = time.perf_counter()
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        if run.loader.generator is not None:
            run.loader.generator.manual_seed(config.seed * 1_000_003 + epoch)
        stats = train_one_epoch(run.module.detector, run.loader, run.optimization, run.settings,
                                f"epoch {epoch + 1}/{config.epochs}")  # fmt: skip
        val, _ = evaluate_split(run, "val")
        row = {"epoch": epoch + 1, "train_loss": stats.loss,
               **{f"train_{k}": v for k, v in stats.parts.items()},
               "val_map": val.map, "val_map50": val.map50,
               "lr": run.optimization.optimizer.param_groups[0]["lr"], "train_s": stats.seconds,
               "images_per_s": stats.images_per_s,
               "epoch_s": time.perf_counter() - started}  # fmt: skip
        if _record(run, epoch, row, val.map):
            logger.info("early stop: val mAP has not improved for %d epochs", config.patience)
            break


def _record(run: DetectionRun, epoch: int, row: dict[str, float], score: float) -> bool:
    state = run.state
    improved = state.record_epoch(row, score, len(run.loader))
    if improved:
        run.best_weights = weights_on_cpu(run.module)
    logger.info("epoch %d: loss %.4f | val mAP %.4f mAP@.5 %.4f | %.2f img/s%s", epoch + 1,
                row["train_loss"], row["val_map"], row["val_map50"], row["images_per_s"],
                " *" if improved else "")  # fmt: skip
    checkpoint = Checkpoint(
        model=weights_on_cpu(run.module), optimizer=run.optimization.optimizer.state_dict(),
        scaler=run.optimization.scaler.state_dict(), state=copy.deepcopy(state),
        config=run.config.to_dict(), arch=run.config.arch, labels=run.splits["train"].labels,
        input_spec=run.spec.model_dump(mode="json"),
        extra={"task": "detect", "detector": asdict(run.detector_config)},
    )  # fmt: skip
    save_checkpoint(checkpoint, run.run_dir / LAST)
    if improved:
        save_checkpoint(checkpoint, run.run_dir / BEST)
    write_results_csv(state.history, run.run_dir / RESULTS_CSV)
    return state.patience_exhausted(run.config.patience)
