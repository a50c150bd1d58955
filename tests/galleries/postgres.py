"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder.

Root may not run PostgreSQL, so as root the cluster belongs to `nobody`. The Makefile's
`postgres` target installs Debian's server when it is missing; without it the tests skip.
"""

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SEARCH = ("/usr/lib/postgresql",)
_UNPRIVILEGED = "nobody"
_START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the cluster would not start."""


def server_binaries() -> Path:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    found = sorted(
        (p for root in _SEARCH for p in Path(root).glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable("no PostgreSQL server installed (make postgres installs it)")
    return found[-1]


@contextmanager
def throwaway_server(directory: Path) -> Iterator[str]:
    """A running server whose data lives in `directory`; yields its URL, stops it after."""
    binaries = server_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    data, port = directory / "data", _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, _UNPRIVILEGED)
        run_as = ["runuser", "-u", _UNPRIVILEGED, "--"]
    _run([*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w"]
    _run([*run_as, *start, "-t", str(_START_TIMEOUT_S), "-l", str(directory / "log"), "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run([*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
