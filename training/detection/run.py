"""What one detector training process holds, shared by the trainer and the run's report."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from app.runtime.card import InputSpec
from training.checkpoint import TrainState
from training.detection.config import DetectionTrainConfig
from training.detection.data import CocoSplit
from training.detection.datacheck import DetectionReport
from training.detection.models import DetectorConfig, ScriptableDetector
from training.distributed import DistContext, EpochSampler
from training.engine import StepSettings, Updater

TrainLoader = DataLoader[tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(kw_only=True)
class DetectionRun:
    """Everything one detector training process holds."""

    config: DetectionTrainConfig
    context: DistContext
    splits: dict[str, CocoSplit]
    dataset_report: DetectionReport
    spec: InputSpec
    detector_config: DetectorConfig
    module: ScriptableDetector
    wrapped: nn.Module  # module.detector, in DistributedDataParallel when there are ranks
    loader: TrainLoader
    sampler: EpochSampler
    optimization: Updater
    settings: StepSettings
    state: TrainState
    run_dir: Path
    best_weights: dict[str, torch.Tensor]
