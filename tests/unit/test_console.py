"""The `visionserve` console script: `python -m app` and `python -m training` in one command."""

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app import console


def test_the_installed_script_lists_serving_and_training_commands() -> None:
    script = Path(sys.executable).parent / "visionserve"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for command in (*console.SERVING_COMMANDS, *console.TRAINING_COMMANDS):
        assert command in result.stdout


def test_a_training_command_reaches_the_training_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        console.main(["export", "--help"])
    assert exit_.value.code == 0
    assert "--arch" in capsys.readouterr().out


def test_a_serving_command_reaches_python_m_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tune` with nothing to tune exits 2, as `python -m app tune` does."""
    monkeypatch.setenv("VISION_OPTIMIZE_CPU", "false")
    monkeypatch.setenv("VISION_AUTOTUNE_BATCH_SIZE", "false")
    with pytest.raises(SystemExit) as exit_:
        console.main(["tune"])
    assert exit_.value.code == 2


def test_openapi_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert console.main(["openapi"]) == 0
    assert "/classify" in json.loads(capsys.readouterr().out)["paths"]


def test_unknown_or_missing_commands_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert console.main(["serv"]) == 2
    assert "unknown command 'serv'" in capsys.readouterr().err
    assert console.main([]) == 2


def test_training_commands_say_so_where_training_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = importlib.import_module

    def without_training(name: str) -> ModuleType:
        if name.startswith("training"):
            raise ModuleNotFoundError(f"No module named {name!r}", name="training")
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", without_training)
    assert console.main(["train", "--data", "x"]) == 2
    assert "training is not installed" in capsys.readouterr().err
