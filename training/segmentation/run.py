"""What one segmenter training process holds, shared by the trainer and the run's report."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from app.runtime.card import InputSpec
from training.checkpoint import TrainState
from training.distributed import DistContext, EpochSampler
from training.engine import StepSettings, Updater
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.data import SegmentationSplit
from training.segmentation.datacheck import SegmentationReport
from training.segmentation.models import Segmenter, SegmenterConfig

TrainLoader = DataLoader[tuple[torch.Tensor, torch.Tensor]]


@dataclass(kw_only=True)
class SegmentationRun:
    """Everything one segmenter training process holds."""

    config: SegmentationTrainConfig
    context: DistContext
    splits: dict[str, SegmentationSplit]
    dataset_report: SegmentationReport
    spec: InputSpec
    segmenter_config: SegmenterConfig
    module: Segmenter
    wrapped: nn.Module  # module, in DistributedDataParallel when there are ranks
    loader: TrainLoader
    sampler: EpochSampler
    optimization: Updater
    settings: StepSettings
    state: TrainState
    run_dir: Path
    best_weights: dict[str, torch.Tensor]
