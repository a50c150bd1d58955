"""requirements/: the locks match pyproject.toml, agree with each other, and are what runs here."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", re.M)


def pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of a pip-compile lock."""
    found: dict[str, str] = {
        canonicalize_name(name): version for name, version in PIN.findall(lock.read_text())
    }
    assert found, f"{lock}: no pins"
    return found


def pyproject_requirements(*extras: str) -> list[Requirement]:
    """The project's dependencies, with those of `extras`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize(
    ("lock", "extras"), [("dev.txt", ("train", "dev")), ("serve.txt", ())], ids=["dev", "serve"]
)
def test_the_lock_satisfies_pyproject(lock: str, extras: tuple[str, ...]) -> None:
    """Fails when pyproject.toml changed without `make lock`."""
    locked = pins(LOCKS / lock)
    for requirement in pyproject_requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock}: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]}, pyproject.toml wants {requirement}: make lock"
        )


def test_both_locks_keep_the_cached_torch_and_agree() -> None:
    dev, serve = pins(LOCKS / "dev.txt"), pins(LOCKS / "serve.txt")
    for lock in (dev, serve):
        assert lock["torch"] == "2.14.1"
        assert lock["torchvision"] == "0.29.1"
    # The service image runs the versions the tests ran.
    assert {name: dev.get(name) for name in serve} == serve
    # The build backend is locked too: make install builds the project without isolation.
    assert "setuptools" in dev


def test_every_pin_carries_hashes() -> None:
    for lock in ("dev.txt", "serve.txt", "weights.txt"):
        text = (LOCKS / lock).read_text()
        blocks = [chunk for chunk in re.split(r"\n(?=\S)", text) if PIN.match(chunk)]
        assert blocks
        for block in blocks:
            assert "--hash=sha256:" in block, f"{lock}: no hash for {block.splitlines()[0]}"


def test_this_environment_runs_the_locked_versions() -> None:
    """`make test` runs on exactly what the lock pins (make install installs it)."""
    wrong = {
        name: (version, installed)
        for name, version in pins(LOCKS / "dev.txt").items()
        if (installed := metadata.version(name)) != version
    }
    assert not wrong, f"installed differs from requirements/dev.txt (run make install): {wrong}"


def test_the_docker_split_covers_the_serving_lock(tmp_path: Path) -> None:
    """deploy/split_lock.py: torch by version, everything else but CUDA libraries with hashes."""
    script = ROOT / "deploy" / "split_lock.py"
    subprocess.run(
        [sys.executable, script, LOCKS / "serve.txt", tmp_path], check=True, capture_output=True
    )
    torch = (tmp_path / "torch.txt").read_text().split()
    assert torch == ["torch==2.14.1", "torchvision==0.29.1"]
    locked_text = (tmp_path / "locked.txt").read_text()
    locked = {canonicalize_name(name) for name, _ in PIN.findall(locked_text)}
    cuda_only = {
        name for name in pins(LOCKS / "serve.txt") if re.match(r"nvidia-|cuda-|triton$", name)
    }
    assert locked | cuda_only | {"torch", "torchvision"} == set(pins(LOCKS / "serve.txt"))
    assert {"fastapi", "pillow", "numpy", "setuptools"} <= locked
    assert locked_text.count("==") == len(locked)  # one pin per block, hashes kept
    assert locked_text.count("--hash=sha256:") >= len(locked)
