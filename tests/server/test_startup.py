"""`python -m app` listens while models load, and a load that fails still fails the start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.test_shutdown import free_port


@pytest.mark.parametrize(
    ("workers", "said"), [("1", b"start-up failed"), ("2", b"could not load its models")]
)
def test_a_store_that_cannot_be_served_exits_with_start_ups_status(
    tmp_path: Path, workers: str, said: bytes
) -> None:
    env = {
        **os.environ,
        "VISION_MODEL_DIR": str(tmp_path),
        "VISION_PORT": str(free_port()),
        "VISION_WORKERS": workers,
    }
    finished = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, timeout=180, check=False
    )
    assert finished.returncode == 3
    assert said in finished.stderr
    assert b"holds no servable model folders" in finished.stderr
