"""bench/gallery.py: when its in-process floor (a CPU measure) is measured and when not."""

import pytest
import torch

from app.runtime.device import DeviceUnavailable
from bench.gallery import floor_skipped

HAS_CUDA = torch.cuda.is_available()


def test_the_floor_is_measured_for_a_cpu_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_DEVICE", "cuda")  # the bench's --env overrides the environment
    assert floor_skipped(["VISION_DEVICE=cpu"], 4) is None
    monkeypatch.setenv("VISION_DEVICE", "cpu")
    assert floor_skipped([], 4) is None


def test_no_rounds_skip_the_floor_and_say_so() -> None:
    assert floor_skipped(["VISION_DEVICE=cpu"], 0) == "not measured (--floor-rounds 0)"


def test_auto_measures_the_floor_only_where_the_server_gets_no_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VISION_DEVICE", raising=False)
    reason = floor_skipped([], 4)
    if HAS_CUDA:
        assert reason is not None and "runs on cuda" in reason
    else:
        assert reason is None


def test_a_gpu_server_gets_no_cpu_floor_and_a_missing_gpu_fails_loudly() -> None:
    if HAS_CUDA:
        reason = floor_skipped(["VISION_DEVICE=cuda"], 4)
        assert reason is not None and "the floor and its bound are for CPU" in reason
    else:
        with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
            floor_skipped(["VISION_DEVICE=cuda"], 4)
