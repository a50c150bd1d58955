"""The git hooks (.pre-commit-config.yaml) run exactly what `make lint typecheck` runs in CI."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with $(VENV) as make install makes it."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no {target} target"
    return [line.strip().replace("$(VENV)", ".venv") for line in match[1].splitlines()]


def test_hooks_run_the_ci_commands() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == make_recipe("lint") + make_recipe("typecheck")
    assert all(hook["language"] == "system" and not hook["pass_filenames"] for hook in hooks)


def test_pre_commit_accepts_the_config() -> None:
    pre_commit = Path(sys.executable).parent / "pre-commit"
    result = subprocess.run(
        [pre_commit, "validate-config", ROOT / ".pre-commit-config.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
