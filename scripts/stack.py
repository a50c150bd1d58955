"""Drive one docker compose project for the deployment checks: build, up, health, down."""

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Builds reach a wheel index on this machine's loopback only through the host network.
LOCAL_INDEX_OVERRIDE = ROOT / "deploy" / "compose.local-index.yml"
INDEX_VARIABLES = ("TORCH_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")

logger = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The stack did not do what a check expected."""


def expect(condition: bool, what: str) -> None:
    """Raise StackError naming `what` unless `condition` holds."""
    if not condition:
        raise StackError(f"check failed: {what}")


@dataclass
class Stack:
    """A compose project published on 127.0.0.1:port, isolated from a developer's own."""

    project: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, capture: bool = False) -> str:
        """Run `docker compose` for this project; its output when `capture`."""
        files = ["-f", "docker-compose.yml"]
        if uses_local_index():
            files += ["-f", str(LOCAL_INDEX_OVERRIDE.relative_to(ROOT))]
        command = ["docker", "compose", "-p", self.project, *files, *args]
        logger.info("$ %s", " ".join(command))
        env = {**os.environ, "VISION_PUBLISH": f"127.0.0.1:{self.port}", **self.env}
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            check=True,
            text=True,
            stdout=subprocess.PIPE if capture else None,
        )
        return completed.stdout or ""

    def containers(self, service: str) -> list[str]:
        """Ids of the service's containers, running or not."""
        return self.compose("ps", "-q", service, capture=True).split()

    def wait_healthy(self, service: str, replicas: int = 1, timeout_s: float = 600) -> float:
        """Seconds until `replicas` containers of the service report healthy."""
        started = time.perf_counter()
        containers: list[str] = []
        while time.perf_counter() - started < timeout_s:
            if len(containers) < replicas:  # `compose ps` is slow: ask until all exist
                containers = self.containers(service)
            states = [container_state(c) for c in containers]
            healthy = sum(state.get("Health", {}).get("Status") == "healthy" for state in states)
            if healthy >= replicas:
                return time.perf_counter() - started
            if any(not state.get("Running") for state in states):
                self.compose("logs", "--tail", "50", service)
                raise StackError(f"{service}: a container stopped before becoming healthy")
            time.sleep(0.5)
        raise StackError(f"{service}: not healthy after {timeout_s:.0f} s")

    def down(self) -> None:
        """Remove the project's containers and network."""
        self.compose("down", "--remove-orphans", "--timeout", "60")


def uses_local_index() -> bool:
    """True when a wheel index on this machine stands in for PyTorch's or PyPI's."""
    urls = " ".join(os.environ.get(name, "") for name in INDEX_VARIABLES)
    return "127.0.0.1" in urls or "localhost" in urls


def docker(*args: str) -> str:
    """Run the docker CLI and return its output."""
    completed = subprocess.run(["docker", *args], check=True, text=True, stdout=subprocess.PIPE)
    return completed.stdout


def container_state(container: str) -> dict[str, Any]:
    """`docker inspect`'s State of one container."""
    state: dict[str, Any] = json.loads(docker("inspect", "-f", "{{json .State}}", container))
    return state


def encode_multipart(files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """(content type, body) with the files in repeated `image` fields."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def request_json(
    url: str,
    body: bytes | None = None,
    content_type: str = "",
    timeout_s: float = 120,
    *,
    method: str | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON or None) of a GET, of a POST when there is a body, or of `method`."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
