"""Device and thread planning."""

from pathlib import Path

import pytest
import torch

from app.runtime.device import (
    DeviceUnavailable,
    available_cores,
    plan_lone_threads,
    plan_threads,
    resolve_device,
)


def test_cpu_plan_is_one_single_threaded_worker_per_core() -> None:
    cores = available_cores()
    assert plan_threads(torch.device("cpu"), 0, 0) == (cores, 1)
    assert plan_threads(torch.device("cpu"), 1, 0) == (1, cores)
    assert plan_threads(torch.device("cpu"), 3, 2) == (3, 2)


def test_several_serving_processes_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(4)))
    monkeypatch.setattr("app.runtime.device._cgroup_quota", lambda _cgroup: None)
    cpu = torch.device("cpu")
    assert plan_threads(cpu, 0, 0, processes=2) == (2, 1)
    assert plan_threads(cpu, 1, 0, processes=2) == (1, 2)
    assert plan_threads(cpu, 0, 0, processes=8) == (1, 1)  # never less than one
    assert plan_lone_threads(cpu, 1, 0, processes=2) == 2
    assert plan_lone_threads(cpu, 1, 0) == 4


def test_one_gpu_gets_one_worker() -> None:
    assert plan_threads(torch.device("cuda"), 0, 0)[0] == 1


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # docker --cpus=1.5 on cgroup v2
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_a_cgroup_quota_caps_the_cores(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    unlimited = available_cores(tmp_path / "nothing-here")
    assert available_cores(tmp_path) == (min(expected, unlimited) if expected else unlimited)


def test_explicit_cuda_without_a_gpu_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto").type == "cpu"
