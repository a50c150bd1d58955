"""The training run: set up, train epoch by epoch with early stopping, evaluate, export.

`train` is what `python -m training train` (and each torchrun process) calls. Every rank
trains and evaluates its shard; only rank 0 writes the run folder and exports the model.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.classification.backbone import build_model, frozen_layers
from training.classification.calibrate import CalibrationRun, calibrate, unknown_from_source
from training.classification.calibration import DecisionGoals
from training.classification.config import TrainConfig
from training.classification.data import DataSplits, load_data
from training.classification.datacheck import DatasetReport, format_report
from training.classification.engine import Optimization, evaluate, train_one_epoch
from training.classification.metrics import ClassificationMetrics, compute_metrics, format_metrics
from training.classification.modules import NormalizedClassifier
from training.classification.publish import Outcome, export_classifier_run, write_outputs
from training.classification.recipe import (
    Loaders,
    build_criterion,
    build_loaders,
    build_optimizer,
    eval_loader,
    scale_recipe,
)
from training.classification.watermark import TriggerSet, read_key
from training.classification.watermark_training import (
    KEY_ID_FIELD,
    redact_key_path,
    run_triggers,
    watermark_record,
)
from training.classification.watermark_verify import format_check, verify_watermark
from training.core.checkpoint import Checkpoint, TrainState
from training.core.datacheck import DatasetError
from training.core.distributed import DistContext, barrier, broadcast_buffers
from training.core.engine import step_settings
from training.core.fit import EpochResult, best_weights_on_disk
from training.core.publish import claim_store_name
from training.core.recipe import build_scheduler, seed_epoch
from training.core.report import run_record
from training.core.run import FitPlan, TaskRun, fit_run
from training.core.session import (
    machine_description,
    open_run_dir,
    parallel,
    resume_into,
    run_log,
    training_process,
)

logger = logging.getLogger(__name__)

_MISTAKES_SHOWN = 24


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    model_dir: Path | None
    split: str
    metrics: ClassificationMetrics
    state: TrainState


@dataclass(kw_only=True)
class Run(TaskRun):
    """Everything one classifier training process holds."""

    config: TrainConfig
    data: DataSplits
    dataset_report: DatasetReport
    model: NormalizedClassifier
    wrapped: nn.Module
    head: str
    weights_source: str
    loaders: Loaders
    optimization: Optimization
    frozen: list[nn.Module]  # the backbone's layers, held in eval mode while it is frozen
    triggers: TriggerSet | None  # the ownership watermark's trigger set, if the run has one


def train(
    config: TrainConfig,
    command: str,
    resume: Checkpoint | None = None,
    resume_dir: Path | None = None,
) -> RunResult:
    """Run the whole recipe; `resume` continues a checkpoint's run in `resume_dir`."""
    started = time.perf_counter()
    config = claim_store_name(config)
    with training_process(config, config.deterministic) as context:
        run = _setup(config, context, resume, resume_dir)
        with run_log(run.run_dir, context.is_main):
            _fit(run)
            return _finish(run, command, time.perf_counter() - started)


def _setup(
    config: TrainConfig, context: DistContext, resume: Checkpoint | None, resume_dir: Path | None
) -> Run:
    data, report = load_data(config)
    config = scale_recipe(config, len(data.train), context.world_size, context.is_main)
    model, spec, head, source = build_model(config, data, resume)
    triggers = run_triggers(config, spec, len(data.classes), resume)
    settings = step_settings(config, context.device, config.channels_last)
    model.to(context.device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    loaders = build_loaders(config, data.train, data.val, spec, context, triggers=triggers)
    optimizer = build_optimizer(model, head, config)
    scaler = settings.grad_scaler()
    state = resume_into(resume, optimizer, scaler)
    scheduler = build_scheduler(
        optimizer, config, len(loaders.train), state.step, config.freeze_backbone_epochs
    )
    criterion = build_criterion(data.train.targets, len(data.classes), config, context.device)
    return Run(
        config=config,
        context=context,
        data=data,
        dataset_report=report,
        spec=spec,
        model=model,
        wrapped=parallel(model, context),
        head=head,
        weights_source=source,
        loaders=loaders,
        optimization=Optimization(optimizer, scheduler, scaler, criterion=criterion),
        settings=settings,
        state=state,
        run_dir=open_run_dir(config, context, resume_dir),
        best_weights=best_weights_on_disk(resume_dir),
        frozen=frozen_layers(model.backbone, head, config.freeze_backbone_epochs, context.is_main),
        triggers=triggers,
    )


def _fit(run: Run) -> None:
    plan = FitPlan(
        model=run.model,
        labels=run.data.classes,
        extra={"weights_source": run.weights_source} | _key_record(run.triggers),
        score_name="val top-1",
        steps_per_epoch=len(run.loaders.train),
        dataset_report=run.dataset_report.to_dict(),
        summary=f"{format_report(run.dataset_report)}\nsplits: {run.data.split_note}",
        run_epoch=lambda epoch, description: _run_epoch(run, epoch, description),
    )
    fit_run(run, plan)


def _run_epoch(run: Run, epoch: int, description: str) -> EpochResult:
    seed_epoch(run.loaders.sampler, run.loaders.train, run.config.seed, epoch, run.context.rank)
    frozen = run.frozen if epoch < run.config.freeze_backbone_epochs else []
    stats = train_one_epoch(
        run.wrapped, run.loaders.train, run.optimization, run.settings, description, frozen=frozen
    )
    broadcast_buffers(run.model)
    tally, _ = evaluate(run.model, run.loaders.val, len(run.data.classes), run.settings)
    val = compute_metrics(tally, run.data.classes)
    row = {
        "train_loss": stats.loss,
        "train_top1": stats.top1,
        "val_loss": val.loss,
        "val_top1": val.top1,
        "val_top5": val.top5,
        "val_macro_f1": val.macro_f1,
        "lr": run.optimization.optimizer.param_groups[-1]["lr"],
        "train_s": stats.seconds,
        "images_per_s": stats.images_per_s,
    }
    summary = (
        f"train loss {stats.loss:.4f} top-1 {stats.top1:.4f} | val loss {val.loss:.4f} "
        f"top-1 {val.top1:.4f} | {stats.images_per_s:.0f} img/s"
    )
    if run.loaders.triggers is not None:
        row["watermark_top1"] = _trigger_accuracy(run)
        summary += f" | watermark {row['watermark_top1']:.3f}"
    return EpochResult(row=row, score=val.top1, loss=val.loss, summary=summary)


def _trigger_accuracy(run: Run) -> float:
    """The share of triggers the model gives the key's label (all ranks)."""
    assert run.loaders.triggers is not None
    tally, _ = evaluate(run.model, run.loaders.triggers, len(run.data.classes), run.settings)
    return compute_metrics(tally, run.data.classes).top1


def _key_record(triggers: TriggerSet | None) -> dict[str, str]:
    return {} if triggers is None else {KEY_ID_FIELD: triggers.key_id}


def _finish(run: Run, command: str, total_s: float) -> RunResult:
    run.model.load_state_dict(run.best_weights)
    classes = run.data.classes
    split, images = run.data.final
    loader = eval_loader(images, run.spec, run.config, run.context)
    tally, mistakes = evaluate(
        run.model,
        loader,
        len(classes),
        run.settings,
        description=split,
        keep_mistakes=_MISTAKES_SHOWN,
    )
    final = compute_metrics(tally, classes)
    best_val = compute_metrics(
        evaluate(run.model, run.loaders.val, len(classes), run.settings)[0], classes
    )
    watermark = None
    if run.triggers is not None:
        watermark = watermark_record(run.triggers, _trigger_accuracy(run))
    model_dir = None
    if run.context.is_main:
        outcome = Outcome(
            config=run.config,
            data=run.data,
            dataset_report=run.dataset_report,
            spec=run.spec,
            split=split,
            final=final,
            best_val=best_val,
            history=run.state.history,
            training=_training_record(run, command, total_s),
            watermark=watermark,
        )
        write_outputs(outcome, mistakes, run.run_dir)
        logger.info("%s", format_metrics(final, f"best epoch on {split}"))
        if run.config.export:
            model_dir = export_classifier_run(
                run.run_dir,
                run.config.store,
                name=run.config.model_name,
                version=run.config.model_version,
            )
            _check_watermark(run, model_dir)
            _calibrate(run, model_dir)
    barrier()
    return RunResult(
        run_dir=run.run_dir, model_dir=model_dir, split=split, metrics=final, state=run.state
    )


def _calibrate(run: Run, model_dir: Path) -> None:
    """Fit the exported model's decisions on the validation split (README "Decisions")."""
    config = run.config
    if not config.calibrate:
        logger.info("not calibrated (--no-calibrate): %s answers without decisions", model_dir)
        return
    unknown, unknown_name = unknown_from_source(config.unknown, config.workers or 2)
    calibration = CalibrationRun(
        model_dir=model_dir,
        classes=run.data.classes,
        held_out=run.data.val,
        held_out_name=f"{run.data.dataset} val ({len(run.data.val)} images)",
        train=run.data.train,
        unknown=unknown,
        unknown_name=unknown_name,
        goals=DecisionGoals(target_tpr=config.target_tpr, match_precision=config.match_precision),
        workers=config.workers,
        progress=config.progress,
    )
    try:
        calibrate(calibration)
    except DatasetError as error:
        logger.warning("%s is not calibrated and answers without decisions: %s", model_dir, error)


def _check_watermark(run: Run, model_dir: Path) -> None:
    """Verify the exported archive as an owner would, and say so (the card has the eager count)."""
    if run.triggers is None or run.config.watermark_key is None:
        return
    check = verify_watermark(model_dir, read_key(Path(run.config.watermark_key)))
    logger.info("watermark check of the export:\n%s", format_check(check))
    if not check.present:
        # The export is the best validation epoch, which may precede the triggers' learning.
        logger.warning(
            "%s does not show its watermark (p = %.3g): train longer or raise --watermark-share",
            model_dir,
            float(check.p_value),
        )


def _training_record(run: Run, command: str, total_s: float) -> dict[str, object]:
    record = _plain_training_record(run, command, total_s)
    return redact_key_path(run.config, record)


def _plain_training_record(run: Run, command: str, total_s: float) -> dict[str, object]:
    return {
        **run_record(run.state, command, total_s, speed_digits=1),
        "weights": run.weights_source,
        "machine": machine_description(run.context.device, run.context.world_size),
        "data": {
            "source": run.data.source,
            "splits": run.data.split_note,
            "counts": {split: sum(counts) for split, counts in run.dataset_report.counts.items()},
            "duplicate_groups": run.dataset_report.duplicate_groups,
            "unreadable_files": len(run.dataset_report.corrupt),
        },
        "recipe": run.config.to_dict(),
        "run": run.run_dir.name,
    }
