"""Recipe parts: schedule, optimizer groups, frozen backbone, class balance, sharded samplers."""

import dataclasses
import itertools
import logging
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.training.helpers import quick_config
from training.classification.backbone import frozen_layers
from training.classification.config import TrainConfig
from training.classification.engine import Optimization, train_one_epoch
from training.classification.models import create_classifier
from training.classification.modules import NormalizedClassifier
from training.classification.recipe import build_optimizer, class_weights, scale_recipe
from training.core.checkpoint import Checkpoint, TrainState, load_checkpoint, save_checkpoint
from training.core.config import ConfigError
from training.core.distributed import EpochSampler, ShardSampler
from training.core.engine import StepSettings
from training.core.recipe import build_scheduler, lr_factor
from training.detection.config import DetectionTrainConfig


def small_model() -> NormalizedClassifier:
    return NormalizedClassifier(
        create_classifier("smallcnn", 3, in_channels=1).backbone, (0.5,), (0.25,)
    )


def test_warmup_then_cosine_to_the_floor() -> None:
    factors = [lr_factor(step, 100, 10, 0.01) for step in range(101)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[100] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))


def test_no_weight_decay_on_biases_and_norms(tmp_path: Path) -> None:
    optimizer = build_optimizer(small_model(), "fc", quick_config("x", tmp_path))
    for group in optimizer.param_groups:
        is_matrix = all(p.ndim > 1 for p in group["params"])
        assert (group["weight_decay"] > 0) == is_matrix
    assert {group["part"] for group in optimizer.param_groups} == {"backbone", "head"}


def test_sgd_is_nesterov(tmp_path: Path) -> None:
    optimizer = build_optimizer(small_model(), "fc", quick_config("x", tmp_path, optimizer="sgd"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["nesterov"]


def test_frozen_backbone_has_zero_learning_rate_for_its_epochs(tmp_path: Path) -> None:
    config = quick_config("x", tmp_path, epochs=4, freeze_backbone_epochs=1, warmup_epochs=0)
    optimizer = build_optimizer(small_model(), "fc", config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=5, step=0, frozen_epochs=1)
    rates = {group["part"]: group["lr"] for group in optimizer.param_groups}
    assert rates == {"backbone": 0.0, "head": pytest.approx(config.lr)}
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert all(group["lr"] > 0 for group in optimizer.param_groups)


def test_scheduler_resumes_at_its_step(tmp_path: Path) -> None:
    config = quick_config("x", tmp_path, epochs=4, warmup_epochs=1)
    fresh = build_optimizer(small_model(), "fc", config)
    scheduler = build_scheduler(fresh, config, 10, 0)
    for _ in range(17):
        fresh.step()
        scheduler.step()
    resumed = build_optimizer(small_model(), "fc", config)
    resumed.load_state_dict(fresh.state_dict())
    build_scheduler(resumed, config, 10, 17)
    assert resumed.param_groups[0]["lr"] == pytest.approx(fresh.param_groups[0]["lr"])


def test_class_weights_are_inverse_frequency() -> None:
    weights = class_weights([0] * 30 + [1] * 10, 2)
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20])


def test_epoch_sampler_shards_evenly_and_reshuffles_per_epoch() -> None:
    ranks = [EpochSampler(11, seed=1, rank=r, world_size=2) for r in range(2)]
    first = [list(sampler) for sampler in ranks]
    assert [len(order) for order in first] == [6, 6]  # padded so both ranks step together
    assert set(first[0] + first[1]) == set(range(11))
    for sampler in ranks:
        sampler.set_epoch(1)
    assert [list(sampler) for sampler in ranks] != first


def test_balanced_sampler_draws_minority_classes_more_often() -> None:
    targets = [0] * 90 + [1] * 10
    per_class = class_weights(targets, 2)
    sampler = EpochSampler(100, seed=0, weights=[float(per_class[t]) for t in targets])
    drawn = Counter(targets[i] for i in list(sampler) * 20)
    assert 0.4 < drawn[1] / sum(drawn.values()) < 0.6


def test_shard_sampler_sees_each_index_once() -> None:
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(index for shard in shards for index in shard) == list(range(7))


def test_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    model = small_model()
    optimizer = build_optimizer(model, "fc", quick_config("x", tmp_path))
    state = TrainState(epoch=2, step=20, best_score=0.5, history=[{"epoch": 1.0}])
    checkpoint = Checkpoint(
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scaler={},
        state=state,
        config={"epochs": 3},
        arch="smallcnn",
        labels=("a", "b", "c"),
        input_spec={"resize_size": 28},
    )
    save_checkpoint(checkpoint, tmp_path / "last.pt")
    torch.load(tmp_path / "last.pt", weights_only=True)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded.state == state
    assert loaded.labels == ("a", "b", "c")
    assert torch.equal(loaded.model["backbone.fc.weight"], model.state_dict()["backbone.fc.weight"])


def test_config_validates_and_round_trips() -> None:
    config = TrainConfig(data="builtin:fashion-mnist", name="x", image_size=32)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(data="d", epochs=0)
    with pytest.raises(ConfigError, match="unknown configuration keys: colour"):
        TrainConfig.from_dict(config.to_dict() | {"colour": "red"})
    assert TrainConfig(data="/data/My Shoes/").model_name == "my-shoes"


def _epoch(state: TrainState, score: float, loss: float | None) -> bool:
    return state.record_epoch({"epoch": state.epoch + 1.0, "epoch_s": 1.0}, score, 10, loss)


def test_best_epoch_breaks_top1_ties_by_val_loss_then_the_later_epoch() -> None:
    state = TrainState()
    assert _epoch(state, 0.5, 1.2)  # epoch 1: first is best
    assert _epoch(state, 0.5, 0.9)  # same top-1, lower loss: better
    assert not _epoch(state, 0.5, 1.0)  # same top-1, higher loss: not better
    assert state.best_epoch == 1 and state.stale_epochs == 1
    assert _epoch(state, 0.5, 0.9)  # an exact tie goes to the later epoch...
    assert state.best_epoch == 3 and state.stale_epochs == 2  # ...but is no progress
    assert not _epoch(state, 0.4, 0.1)  # lower top-1 loses whatever its loss
    assert _epoch(state, 0.6, 5.0) and state.stale_epochs == 0
    assert state.best_score == 0.6 and state.best_loss == 5.0


def test_old_checkpoint_state_without_best_loss_loads() -> None:
    stored = {
        "epoch": 2,
        "step": 20,
        "best_score": 0.5,
        "best_epoch": 1,
        "stale_epochs": 0,
        "history": [],
        "wall_time_s": 3.0,
    }
    state = TrainState.from_dict(stored)
    assert state.best_loss == float("inf")
    assert _epoch(state, 0.5, 2.0) and state.best_epoch == 2


def test_a_frozen_backbone_keeps_its_batch_norm_statistics(tmp_path: Path) -> None:
    model = small_model()
    frozen = frozen_layers(model.backbone, "fc", epochs=1, log=False)
    head = {id(m) for m in model.backbone.get_submodule("fc").modules()}
    assert frozen and not any(id(layer) in head for layer in frozen)
    norms = [m for m in frozen if isinstance(m, torch.nn.BatchNorm2d)]
    means = [norm.running_mean for norm in norms if norm.running_mean is not None]
    assert norms
    before = [mean.clone() for mean in means]
    config = quick_config("x", tmp_path)
    optimizer = build_optimizer(model, "fc", config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    criterion = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    optimization = Optimization(optimizer, scheduler, scaler, criterion=criterion)
    batch = (torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    settings = StepSettings(torch.device("cpu"), progress=False)
    train_one_epoch(model, [batch], optimization, settings, "t", frozen=frozen)
    assert all(torch.equal(a, mean) for a, mean in zip(before, means, strict=True))
    train_one_epoch(model, [batch], optimization, settings, "t")
    assert not all(torch.equal(a, mean) for a, mean in zip(before, means, strict=True))
    assert frozen_layers(model.backbone, "fc", epochs=0, log=False) == []


def test_batch_size_and_lr_scale_to_a_small_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = quick_config("x", tmp_path, batch_size=0, lr=0.0)
    with caplog.at_level(logging.INFO):
        scaled = scale_recipe(config, images=90, world_size=1, log=True)
    assert scaled.batch_size == 8  # 11 steps an epoch; 16 would give 5
    assert scaled.lr == pytest.approx(2e-3 * math.sqrt(8 / 128))
    assert "recipe scaled to 90 training images on 1 process(es): batch size 8 (11 steps" in (
        caplog.text
    )


def test_a_large_data_set_keeps_the_reference_recipe(tmp_path: Path) -> None:
    config = quick_config("x", tmp_path, batch_size=0, lr=0.0)
    scaled = scale_recipe(config, images=54_000, world_size=2, log=False)
    assert (scaled.batch_size, scaled.lr) == (128, 2e-3)
    sgd = scale_recipe(dataclasses.replace(config, optimizer="sgd", batch_size=32), 90, 1, False)
    assert sgd.lr == pytest.approx(2e-3 / 4)  # SGD: linear in the batch size


def test_an_explicit_batch_size_with_few_steps_is_kept_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = quick_config("x", tmp_path, batch_size=128, lr=1e-3)
    with caplog.at_level(logging.INFO):
        scaled = scale_recipe(config, images=110, world_size=1, log=True)
    assert (scaled.batch_size, scaled.lr) == (128, 1e-3)
    assert "--batch-size 128 gives 1 optimiser step(s) per epoch on 110 training images" in (
        caplog.text
    )
    assert "recipe scaled" not in caplog.text


def test_only_the_classifier_recipe_takes_zero_for_scaled(tmp_path: Path) -> None:
    assert TrainConfig(data="x", batch_size=0, lr=0.0).batch_size == 0
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        DetectionTrainConfig(data="x", batch_size=0)
    with pytest.raises(ConfigError, match="lr must be positive"):
        DetectionTrainConfig(data="x", lr=0.0)
