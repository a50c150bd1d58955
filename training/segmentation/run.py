"""What one segmenter training process holds, shared by the trainer and the run's report."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from training.core.distributed import EpochSampler
from training.core.run import TaskRun
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.data import SegmentationSplit
from training.segmentation.datacheck import SegmentationReport
from training.segmentation.models import Segmenter, SegmenterConfig

TrainLoader = DataLoader[tuple[torch.Tensor, torch.Tensor]]


@dataclass(kw_only=True)
class SegmentationRun(TaskRun):
    """Everything one segmenter training process holds."""

    config: SegmentationTrainConfig
    splits: dict[str, SegmentationSplit]
    dataset_report: SegmentationReport
    segmenter_config: SegmenterConfig
    module: Segmenter
    wrapped: nn.Module  # module, in DistributedDataParallel when there are ranks
    loader: TrainLoader
    sampler: EpochSampler
