"""The detector run: data, model, epochs with validation mAP and early stopping, test, export.

Under torchrun every rank trains its shard of each epoch (DistributedDataParallel) and predicts
its shard of each evaluation; the detections are gathered so every rank scores the same mAP.
Only rank 0 writes the run folder and exports.
"""

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from app.runtime.card import InputSpec, Normalization
from training.core.checkpoint import Checkpoint
from training.core.distributed import DistContext, EpochSampler, ShardSampler, barrier, gather_lists
from training.core.engine import Updater, step_settings
from training.core.fit import EpochResult, best_weights_on_disk
from training.core.publish import claim_store_name
from training.core.recipe import (
    build_scheduler,
    decayed_weights_optimizer,
    seed_epoch,
)
from training.core.run import FitPlan, fit_run
from training.core.scenes import SceneConfig
from training.core.session import (
    open_run_dir,
    parallel,
    resume_into,
    run_log,
    training_process,
)
from training.core.weights import IMAGENET_MEAN, IMAGENET_STD
from training.detection.config import DetectionTrainConfig
from training.detection.data import CocoSplit, ServedImages, TrainImages, collate, resolve_source
from training.detection.datacheck import (
    CheckedDetectionData,
    check_detection_data,
    format_report,
    validate_detection,
)
from training.detection.engine import predict, train_one_epoch
from training.detection.metrics import DetectionMetrics, coco_metrics
from training.detection.models import DetectorConfig, ScriptableDetector, create_detector
from training.detection.publish import export_detector_run
from training.detection.report import finish_run
from training.detection.run import DetectionRun, TrainLoader

logger = logging.getLogger(__name__)

_PARITY_IMAGES = 4


def train_detector(
    config: DetectionTrainConfig,
    command: str,
    resume: Checkpoint | None = None,
    resume_dir: Path | None = None,
) -> Path | None:
    """Run the whole recipe; return the exported model folder (None with --no-export)."""
    started = time.perf_counter()
    config = claim_store_name(config)
    with training_process(config) as context:
        run = _setup(config, context, resume, resume_dir)
        with run_log(run.run_dir, context.is_main):
            _fit(run)
            run.module.load_state_dict(run.best_weights)
            model_dir = _finish(run, command, time.perf_counter() - started)
            barrier()
            return model_dir


def _finish(run: DetectionRun, command: str, total_s: float) -> Path | None:
    """Score the best weights (every rank predicts its shard), then rank 0 reports and exports."""
    finish_run(run, command, total_s, evaluate_split)
    if not run.context.is_main or not run.config.export:
        return None
    served = ServedImages(run.splits["val"], run.spec)
    images = [served[i][0] for i in range(min(_PARITY_IMAGES, len(served)))]
    config = run.config
    return export_detector_run(
        run.run_dir, config.store, images, name=config.model_name, version=config.model_version
    )


def detector_input_spec(image_size: int) -> InputSpec:
    """Longer side scaled down to image_size; ImageNet mean/std applied inside the model."""
    return InputSpec(
        color_mode="RGB",
        resize_mode="longer_side",
        resize_size=image_size,
        normalization=Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )


def _setup(
    config: DetectionTrainConfig,
    context: DistContext,
    resume: Checkpoint | None,
    resume_dir: Path | None,
) -> DetectionRun:
    data = _checked_data(config, context)
    labels = data.splits["train"].labels
    spec = detector_input_spec(config.image_size)
    detector_config = DetectorConfig(
        config.arch, len(labels), config.image_size, config.fpn_channels, config.trainable_layers
    )
    weights = "none" if resume is not None else config.weights
    module = ScriptableDetector(create_detector(detector_config, weights))
    if resume is not None:
        module.load_state_dict(resume.model)
    module.to(context.device)
    settings = step_settings(config, context.device, channels_last="off")
    loader, sampler = _train_loader(config, data.splits["train"], spec, context)
    optimizer = decayed_weights_optimizer(module, config)
    scaler = settings.grad_scaler()
    state = resume_into(resume, optimizer, scaler)
    scheduler = build_scheduler(optimizer, config, len(loader), state.step)
    return DetectionRun(
        config=config,
        context=context,
        splits=data.splits,
        dataset_report=data.report,
        spec=spec,
        detector_config=detector_config,
        module=module,
        wrapped=parallel(module.detector, context),
        loader=loader,
        sampler=sampler,
        optimization=Updater(optimizer, scheduler, scaler),
        settings=settings,
        state=state,
        run_dir=open_run_dir(config, context, resume_dir),
        best_weights=best_weights_on_disk(resume_dir),
    )


def _checked_data(config: DetectionTrainConfig, context: DistContext) -> CheckedDetectionData:
    """The data folder (builtin:scenes generated first), checked: training reads what passed."""
    scenes = SceneConfig(
        seed=config.seed,
        train=config.scenes,
        val=max(8, config.scenes // 10),
        test=max(8, config.scenes * 3 // 20),
    )
    # Rank 0 generates builtin:scenes; the others wait, then find the finished folder.
    if not context.is_main:
        barrier()
    root = resolve_source(config.data, scenes, workers=max(1, config.workers))
    if context.is_main:
        barrier()
    data = check_detection_data(root, config.workers or 4)
    validate_detection(data.report)
    return data


def _train_loader(
    config: DetectionTrainConfig, split: CocoSplit, spec: InputSpec, context: DistContext
) -> tuple[TrainLoader, EpochSampler]:
    """This rank's shard of a seeded shuffle (the first --max-images images when given)."""
    dataset: torch.utils.data.Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]
    dataset = TrainImages(split, spec)
    count = min(config.max_images or len(split.images), len(split.images))
    if count < len(split.images):
        dataset = Subset(dataset, range(count))
    sampler = EpochSampler(count, config.seed, context.rank, context.world_size)
    loader = DataLoader(
        dataset,
        config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate,
        pin_memory=context.device.type == "cuda",
        drop_last=len(sampler) > config.batch_size,
        generator=torch.Generator(),
        persistent_workers=config.workers > 0,
    )
    return loader, sampler


def evaluate_split(
    run: DetectionRun, split: str
) -> tuple[DetectionMetrics, list[dict[str, object]]]:
    """mAP of the current weights on `split`, through the service's decode and preprocessing.

    Each rank predicts its shard; the gathered detections are scored on every rank alike.
    """
    data = run.splits[split]
    served = ServedImages(data, run.spec)
    context = run.context
    loader = DataLoader(
        served,
        batch_size=8,
        sampler=ShardSampler(len(served), context.rank, context.world_size),
        num_workers=run.config.workers,
        collate_fn=collate,
    )
    categories = [0, *sorted(data.category_to_label, key=data.category_to_label.__getitem__)]
    detections = predict(
        run.module,
        loader,
        categories,
        device=run.settings.device,
        progress=run.config.progress and context.is_main,
        description=split,
    )
    everything = gather_lists(detections)
    return coco_metrics(data.coco, everything, data.labels), everything


def _fit(run: DetectionRun) -> None:
    plan = FitPlan(
        model=run.module,
        labels=run.splits["train"].labels,
        extra={"task": "detect", "detector": asdict(run.detector_config)},
        score_name="val mAP",
        steps_per_epoch=len(run.loader),
        dataset_report=run.dataset_report.to_dict(),
        summary=format_report(run.dataset_report),
        run_epoch=lambda epoch, description: _run_epoch(run, epoch, description),
    )
    fit_run(run, plan)


def _run_epoch(run: DetectionRun, epoch: int, description: str) -> EpochResult:
    seed_epoch(run.sampler, run.loader, run.config.seed, epoch, run.context.rank)
    stats = train_one_epoch(run.wrapped, run.loader, run.optimization, run.settings, description)
    val, _ = evaluate_split(run, "val")
    row = {
        "train_loss": stats.loss,
        **{f"train_{name}": value for name, value in stats.parts.items()},
        "val_map": val.map,
        "val_map50": val.map50,
        "lr": run.optimization.optimizer.param_groups[0]["lr"],
        "train_s": stats.seconds,
        "images_per_s": stats.images_per_s,
    }
    summary = (
        f"loss {stats.loss:.4f} | val mAP {val.map:.4f} mAP@.5 {val.map50:.4f} | "
        f"{stats.images_per_s:.2f} img/s"
    )
    return EpochResult(row=row, score=val.map, loss=None, summary=summary)
