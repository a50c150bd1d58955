"""The segmenter run: data, model, epochs with validation mIoU and early stopping, test, export.

Under torchrun every rank trains its shard of each epoch (DistributedDataParallel) and scores
its shard of each evaluation; the confusion matrices are summed, so every rank sees one mIoU.
Only rank 0 writes the run folder and exports.
"""

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from app.runtime.card import InputSpec, Normalization
from training.core.checkpoint import Checkpoint
from training.core.distributed import DistContext, EpochSampler, ShardSampler, barrier
from training.core.engine import Updater, step_settings
from training.core.fit import EpochResult, best_weights_on_disk
from training.core.publish import claim_store_name
from training.core.recipe import (
    build_scheduler,
    decayed_weights_optimizer,
    seed_epoch,
)
from training.core.run import FitPlan, fit_run
from training.core.session import (
    open_run_dir,
    parallel,
    resume_into,
    run_log,
    training_process,
)
from training.core.weights import IMAGENET_MEAN, IMAGENET_STD
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.data import SegmentationSplit
from training.segmentation.datacheck import format_report
from training.segmentation.datasets import (
    ServedPairs,
    TrainPairs,
    collate_served,
    collate_train,
)
from training.segmentation.engine import evaluate, train_one_epoch
from training.segmentation.metrics import SegmentationMetrics
from training.segmentation.models import Segmenter, SegmenterConfig
from training.segmentation.publish import export_segmenter_run
from training.segmentation.report import finish_run
from training.segmentation.run import SegmentationRun, TrainLoader
from training.segmentation.sources import checked_splits

logger = logging.getLogger(__name__)

_EVAL_BATCH = 8
_PARITY_IMAGES = 4


def train_segmenter(
    config: SegmentationTrainConfig,
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
            finish_run(run, command, time.perf_counter() - started, evaluate_split)
            barrier()
            if not context.is_main or not config.export:
                return None
            served = ServedPairs(run.splits["val"], run.spec)
            images = [served[i][0] for i in range(min(_PARITY_IMAGES, len(served)))]
            return export_segmenter_run(
                run.run_dir,
                config.store,
                images,
                name=config.model_name,
                version=config.model_version,
            )


def segmenter_input_spec(image_size: int) -> InputSpec:
    """The whole image stretched to a square; ImageNet mean/std applied inside the model."""
    return InputSpec(
        color_mode="RGB",
        resize_mode="stretch",
        resize_size=image_size,
        normalization=Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )


def _setup(
    config: SegmentationTrainConfig,
    context: DistContext,
    resume: Checkpoint | None,
    resume_dir: Path | None,
) -> SegmentationRun:
    # Rank 0 generates builtin:scenes-seg; the others wait, then find the finished folder.
    if not context.is_main:
        barrier()
    splits, report = checked_splits(
        config.data,
        seed=config.seed,
        scenes=config.scenes,
        fractions=(config.val_fraction, config.test_fraction),
        workers=max(1, config.workers),
    )
    if context.is_main:
        barrier()
    labels = splits["train"].labels
    spec = segmenter_input_spec(config.image_size)
    segmenter_config = SegmenterConfig(
        arch=config.arch,
        num_classes=len(labels),
        head_channels=config.head_channels,
        trainable_layers=config.trainable_layers,
    )
    module = Segmenter(segmenter_config, "none" if resume is not None else config.weights)
    if resume is not None:
        module.load_state_dict(resume.model)
    module.to(context.device)
    settings = step_settings(config, context.device, channels_last="off")
    loader, sampler = _train_loader(config, splits["train"], context)
    optimizer = decayed_weights_optimizer(module, config)
    scaler = settings.grad_scaler()
    state = resume_into(resume, optimizer, scaler)
    scheduler = build_scheduler(optimizer, config, len(loader), state.step)
    return SegmentationRun(
        config=config,
        context=context,
        splits=splits,
        dataset_report=report,
        spec=spec,
        segmenter_config=segmenter_config,
        module=module,
        wrapped=parallel(module, context),
        loader=loader,
        sampler=sampler,
        optimization=Updater(optimizer, scheduler, scaler),
        settings=settings,
        state=state,
        run_dir=open_run_dir(config, context, resume_dir),
        best_weights=best_weights_on_disk(resume_dir),
    )


def _train_loader(
    config: SegmentationTrainConfig, split: SegmentationSplit, context: DistContext
) -> tuple[TrainLoader, EpochSampler]:
    """This rank's shard of a seeded shuffle (the first --max-images images when given)."""
    dataset: torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]
    dataset = TrainPairs(split, config.image_size)
    count = min(config.max_images or len(split.images), len(split.images))
    if count < len(split.images):
        dataset = Subset(dataset, range(count))
    sampler = EpochSampler(count, config.seed, context.rank, context.world_size)
    loader = DataLoader(
        dataset,
        config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate_train,
        pin_memory=context.device.type == "cuda",
        drop_last=len(sampler) > config.batch_size,
        generator=torch.Generator(),
        persistent_workers=config.workers > 0,
    )
    return loader, sampler


def evaluate_split(run: SegmentationRun, split: str) -> SegmentationMetrics:
    """Scores of the current weights on `split`, through the service's preprocessing."""
    served = ServedPairs(run.splits[split], run.spec)
    context = run.context
    loader = DataLoader(
        served,
        batch_size=_EVAL_BATCH,
        sampler=ShardSampler(len(served), context.rank, context.world_size),
        num_workers=run.config.workers,
        collate_fn=collate_served,
    )
    settings = replace(run.settings, progress=run.settings.progress and context.is_main)
    return evaluate(run.module, loader, run.splits[split].labels, settings, split)


def _fit(run: SegmentationRun) -> None:
    plan = FitPlan(
        model=run.module,
        labels=run.splits["train"].labels,
        extra={"task": "segment", "segmenter": asdict(run.segmenter_config)},
        score_name="val mIoU",
        steps_per_epoch=len(run.loader),
        dataset_report=run.dataset_report.to_dict(),
        summary=format_report(run.dataset_report),
        run_epoch=lambda epoch, description: _run_epoch(run, epoch, description),
    )
    fit_run(run, plan)


def _run_epoch(run: SegmentationRun, epoch: int, description: str) -> EpochResult:
    seed_epoch(run.sampler, run.loader, run.config.seed, epoch, run.context.rank)
    stats = train_one_epoch(run.wrapped, run.loader, run.optimization, run.settings, description)
    val = evaluate_split(run, "val")
    row = {
        "train_loss": stats.loss,
        "train_pixel_accuracy": stats.pixel_accuracy,
        "val_miou": val.miou,
        "val_pixel_accuracy": val.pixel_accuracy,
        "lr": run.optimization.optimizer.param_groups[0]["lr"],
        "train_s": stats.seconds,
        "images_per_s": stats.images_per_s,
    }
    summary = (
        f"loss {stats.loss:.4f} | val mIoU {val.miou:.4f} pixel acc {val.pixel_accuracy:.4f} | "
        f"{stats.images_per_s:.2f} img/s"
    )
    return EpochResult(row=row, score=val.miou, loss=None, summary=summary)
