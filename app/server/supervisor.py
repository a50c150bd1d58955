"""WORKERS > 1: that many worker processes (app/server/worker.py) on one listening socket.

uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) runs plain `uvicorn.Server`
workers from a pickled config, which cannot carry our protocol class. Here each worker builds
its `DrainingServer` and guarded protocol from the settings after it is spawned; the parent
binds the socket, tells every worker to drain the moment the first stop signal arrives, replaces
a worker that dies while serving, and exits with a status that says whether all of them drained.
"""

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from types import FrameType

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.config import Settings
from app.observability import configure_logging
from app.server.worker import (
    LOADED_APP,
    STARTUP_FAILED,
    DrainingServer,
    exit_status,
    uvicorn_config,
)

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerServer(DrainingServer):
    """A worker's `DrainingServer`: a stop while its models load ends the start-up cleanly.

    A worker accepts nothing before its models are loaded, so there is nothing to drain: it
    finishes loading, closes, and exits 0 like a drained one (a second signal stops it now).
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.started or self.should_exit:
            super().handle_exit(sig, frame)
        else:
            self.should_exit = True


class WorkerProcess(Process):
    """uvicorn's worker process (health pings included), running our `DrainingServer`."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.parent_pid = os.getpid()

    def ping(self, timeout: float = 5) -> bool:
        """Whether the worker answers a health ping within `timeout`; False at once if it ends.

        uvicorn's ping waits on the pipe alone, which has no end of file when the worker dies
        (the parent holds both ends), so a worker that dies unanswered took the whole timeout.
        """
        try:
            self.parent_conn.send(b"ping")
            ready = wait([self.parent_conn, self.process.sentinel], timeout)
            if self.parent_conn not in ready:
                return False
            self.parent_conn.recv()
        except (OSError, EOFError):
            return False
        return True

    @property
    def server(self) -> WorkerServer:
        if not isinstance(self._server, WorkerServer):
            raise RuntimeError("the worker's server is built in the worker (target)")
        return self._server

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """The worker's main: serve until told to stop, then exit with the server's status."""
        _follow_parent(self.parent_pid)
        # The protocol class cannot be pickled: settings, logging and server are built here.
        settings = Settings()
        configure_logging(settings.log_format, settings.log_level)
        # Its models load before it accepts (LOADED_APP): a worker listening while it loads
        # would answer 503 beside a ready one on the same socket, and /readyz would flap.
        self._server = WorkerServer(
            uvicorn_config(settings, factory=LOADED_APP), settings.shutdown_drain_s
        )
        super().target(sockets)
        sys.exit(exit_status(self.server))


def _follow_parent(parent_pid: int) -> None:
    """Take stop signals from the parent alone; drain if the parent dies first.

    A terminal's Ctrl-C goes to the whole process group: a worker would get it and then the
    parent's forwarded signal, a second signal, which cuts its drain short.
    """
    os.setpgid(0, 0)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)  # the parent died before the line above: nobody to serve for


class Supervisor(Multiprocess):
    """uvicorn's Multiprocess with our workers, a forwarded drain and an exit status."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)  # queues the other signals (TTOU, ...) for the loop
        self.stop_signals: list[int] = []
        self._told: set[int] = set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, sig: int, frame: FrameType | None) -> None:
        # Forwarded from the handler, not the loop's next tick, so every worker's drain (and
        # its /readyz 503) starts within milliseconds of the signal. A second signal is
        # forwarded too: each worker then skips the rest of its drain.
        self.stop_signals.append(sig)
        self.should_exit.set()
        self._tell_workers(sig, again=len(self.stop_signals) > 1)

    def _tell_workers(self, sig: int, *, again: bool) -> None:
        for process in self.processes:
            if process.pid is None or (process.pid in self._told and not again):
                continue
            self._told.add(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)

    def spawn(self) -> WorkerProcess:
        """A started worker."""
        process = WorkerProcess(self.config, self.sockets)
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self.spawn() for _ in range(self.processes_num)]

    def run(self) -> None:
        logger.info("parent process [%d]: %d workers", os.getpid(), self.processes_num)
        self.init_processes()
        while not self.should_exit.wait(0.5):
            self.handle_signals()
            self.keep_subprocess_alive()
        # Workers not told yet: a stop by a worker's failed start, or one spawned meanwhile.
        self._tell_workers(signal.SIGTERM, again=False)
        self.join_all()

    def keep_subprocess_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return  # stopping: a worker ending now is not replaced
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already gone
            process.join()
            if process.exitcode == STARTUP_FAILED:
                logger.error("worker [%s] could not load its models: stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return  # the stop signal came while it was pinged: it ended by it
            logger.warning(
                "worker [%s] ended (%s): starting another", process.pid, process.exitcode
            )
            # It loads its models before it accepts, so the others keep serving meanwhile.
            self.processes[index] = self.spawn()

    def handle_hup(self) -> None:
        logger.warning("SIGHUP ignored: restart the service to replace its workers")

    def handle_ttin(self) -> None:
        logger.warning("SIGTTIN ignored: the number of workers is WORKERS")

    def exit_status(self) -> int:
        """The parent's exit status, from its workers' (`shutdown_status`)."""
        return shutdown_status([process.exitcode for process in self.processes], self.stop_signals)


# A worker that exits 0 drained. One ended by SIGTERM itself was told to stop before it could
# handle the signal: a replacement still importing, before uvicorn installed its handlers. It
# accepts nothing before its models are loaded, so it had nothing to drain (a serving worker
# handles the first stop signal and exits 0 after its drain).
_DRAINED = (0, -signal.SIGTERM)


def shutdown_status(worker_statuses: list[int | None], stop_signals: list[int]) -> int:
    """0 when every worker drained; 3 when one failed to load its models; 128 + a second
    stop signal; 1 when a worker ended otherwise during the shutdown."""
    if STARTUP_FAILED in worker_statuses:
        return STARTUP_FAILED
    if len(stop_signals) > 1:
        return 128 + stop_signals[-1]
    return 0 if all(status in _DRAINED for status in worker_statuses) else 1


def supervisor_config(settings: Settings) -> uvicorn.Config:
    """What the parent needs (where to bind, how many workers), all of it picklable."""
    return uvicorn.Config(
        LOADED_APP,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=None,
        # A new worker imports torch before its first answer to the parent's health ping
        # (4-6 s on 2 busy cores); uvicorn's 5 s would kill it as hung, again and again.
        timeout_worker_healthcheck=60,
    )


def serve_workers(settings: Settings) -> int:
    """Serve with WORKERS processes until stopped; the exit status (0: every worker drained)."""
    config = supervisor_config(settings)
    listener = config.bind_socket()  # one socket, one backlog: see README, Hardening
    supervisor = Supervisor(config, [listener])
    try:
        supervisor.run()
    finally:
        listener.close()
    status = supervisor.exit_status()
    logger.info("parent process [%d] exits with status %d", os.getpid(), status)
    return status
