"""One JSON log format for uvicorn's lines and ours; an access line per request with its facts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.images import RED, solid
from tests.server.test_shutdown import answer_status, free_port


def test_every_line_is_json_and_each_request_has_an_access_line(
    model_store: Path, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "service.log"
    env = {
        **os.environ,
        "VISION_MODEL_DIR": str(model_store),
        "VISION_DEFAULT_CLASSIFIER": "tiny-colors",
        "VISION_DEFAULT_DETECTOR": "tiny-boxes",
        "VISION_PORT": str(port),
        "VISION_LOG_FORMAT": "json",
        "VISION_API_KEYS": "k1,k2",
        "VISION_SHUTDOWN_DRAIN_S": "0",
        "VISION_AUTOTUNE_BATCH_SIZE": "false",
    }
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, stderr=stderr)
        try:
            # /models answers once the models are in (/healthz already while they load)
            ready = b"GET /models HTTP/1.1\r\nHost: x\r\nX-API-Key: k1\r\nConnection: close\r\n\r\n"
            deadline = time.monotonic() + 120
            while answer_status(port, ready) != "200":
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            image = solid(RED)
            request = (
                f"POST /classify HTTP/1.1\r\nHost: x\r\nX-API-Key: k2\r\nX-Request-Id: trace-me\r\n"
                f"Content-Type: image/png\r\nContent-Length: {len(image)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + image
            assert answer_status(port, request) == "200"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "app.main", "app.access"} <= loggers
    (access,) = [line for line in lines if line.get("request_id") == "trace-me"]
    assert access["logger"] == "app.access"
    assert access["route"] == "/classify"
    assert access["status"] == 200
    assert access["model"] == "tiny-colors"
    assert access["model_version"] == "0.0.1"
    assert access["images"] == 1
    assert access["latency_ms"] > 0
    # A key of the plain list is named by its fingerprint; the key itself is never logged.
    assert access["key_name"].startswith("unnamed-") and len(access["key_name"]) == 16
    assert "k2" not in json.dumps(access)
