"""What one detector training process holds, shared by the trainer and the run's report."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from training.core.distributed import EpochSampler
from training.core.run import TaskRun
from training.detection.config import DetectionTrainConfig
from training.detection.data import CocoSplit
from training.detection.datacheck import DetectionReport
from training.detection.models import DetectorConfig, ScriptableDetector

TrainLoader = DataLoader[tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(kw_only=True)
class DetectionRun(TaskRun):
    """Everything one detector training process holds."""

    config: DetectionTrainConfig
    splits: dict[str, CocoSplit]
    dataset_report: DetectionReport
    detector_config: DetectorConfig
    module: ScriptableDetector
    wrapped: nn.Module  # module.detector, in DistributedDataParallel when there are ranks
    loader: TrainLoader
    sampler: EpochSampler
