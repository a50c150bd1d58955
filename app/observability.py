"""Prometheus metrics (one registry per app) and logging setup."""

import json
import logging
import sys
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.request_context import current_request_id
from app.runtime.batching import BatchRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.runtime.registry import RefusedModel, ServedModel

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """Every metric the service exports, registered in its own registry (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "visionserve_http_requests_total",
            "HTTP requests by route, status code and API key name ('-': none or open service).",
            ["route", "status", "key"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "visionserve_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "visionserve_images_total",
            "Images answered, by model and outcome (ok or an error code).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "visionserve_batch_size",
            "Images per forward pass.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "visionserve_batch_duration_seconds",
            "Wall time of one batched forward pass, postprocessing included.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "visionserve_queue_duration_seconds",
            "Time an image waited in its model's queue before its forward pass began.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decode_seconds = Histogram(
            "visionserve_decode_duration_seconds",
            "Time to decode and preprocess one usable upload.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_loads = Counter(
            "visionserve_model_loads_total",
            "Model folders loaded or refused (unsigned, altered, unloadable), by folder.",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "visionserve_model_info",
            "The model version being served: 1 per served name, version, task and sha256.",
            ["model", "version", "task", "sha256"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "visionserve_queue_depth",
            "Images waiting for or in a forward pass.",
            ["model"],
            registry=self.registry,
        )

    def observe_loaded(
        self, loaded: "Sequence[ServedModel]", refused: "Sequence[RefusedModel]"
    ) -> None:
        """Count folders loaded and refused (at start-up and each reload); info for the new."""
        for served in loaded:
            card = served.card
            self.model_loads.labels(served.name, "loaded").inc()
            self.model_info.labels(served.name, card.version, card.task, served.loaded.sha256).set(
                1
            )
        for item in refused:
            self.model_loads.labels(item.folder, "refused").inc()

    def observe_retired(self, models: "Sequence[ServedModel]") -> None:
        """Drop the info of versions no longer served."""
        for served in models:
            card = served.card
            labels = (served.name, card.version, card.task, served.loaded.sha256)
            try:
                self.model_info.remove(*labels)
            except KeyError:  # never exported (loaded before metrics existed)
                continue

    def observe_request(
        self, route: str, status: int, seconds: float, key_name: str | None = None
    ) -> None:
        """Record one answered (or abandoned: 499) HTTP request, by the name of its API key.

        Names come from the key file (and one per plain key), so the label stays bounded.
        """
        self.requests.labels(route, str(status), key_name or "-").inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_batch(self, model: str, record: BatchRecord) -> None:
        """Record one forward pass and how long its images waited for it."""
        self.batch_size.labels(model).observe(record.size)
        self.batch_seconds.labels(model).observe(record.forward_s)
        queued = self.queue_seconds.labels(model)
        for seconds in record.queued_s:
            queued.observe(seconds)


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was written for (or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            payload["request_id"] = request_id
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class _TextFormatter(logging.Formatter):
    """The classic line, with `request=<id>` when it was written for a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", {})
        request_id = fields.get("request_id") or getattr(record, "request_id", None)
        return f"{line} request={request_id}" if request_id else line


# Ours, and uvicorn's (server and error lines; its access line is replaced by app.access).
LOGGERS = ("app", "uvicorn")


def configure_logging(log_format: Literal["text", "json"], level: str) -> None:
    """Send our and uvicorn's logs to stderr in the one configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler.addFilter(_RequestIdFilter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # uvicorn's protocol logs access lines whenever its logger has a handler up the tree.
    logging.getLogger("uvicorn.access").disabled = True
