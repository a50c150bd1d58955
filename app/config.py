"""Service settings: read once from the environment (prefix VISION_), nowhere else."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.runtime.card import Task

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    """Every knob of the service, with units in the names."""

    # An empty VISION_* variable means "the default": docker compose passes every setting
    # through as `${VISION_X:-}`, so unset ones arrive as empty strings.
    model_config = SettingsConfigDict(
        env_prefix="VISION_", env_ignore_empty=True, frozen=True, protected_namespaces=()
    )

    model_dir: Path = DEFAULT_MODEL_DIR
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    default_classifier: str = "imagenet-mobilenet-v2"
    default_detector: str = "objects-detector"
    default_segmenter: str = "objects-segmenter"

    max_batch_size: int = Field(default=16, ge=1, le=256)
    autotune_batch_size: bool = True  # measure 1, 2, 4 ... MAX_BATCH_SIZE at warm-up; keep the best
    optimize_cpu: bool = True  # oneDNN + folded batch norm for classifiers on CPU, parity-checked
    # Measured choices (runtime, batch size) per model, machine and thread plan; delete to re-tune.
    tuning_dir: Path = Path("tuning")
    max_batch_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    queue_limit: int = Field(default=256, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0.0)

    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=64)
    min_image_side: int = Field(default=8, ge=1)
    max_images_per_request: int = Field(default=32, ge=1)

    api_keys: Annotated[frozenset[str], NoDecode] = Field(default=frozenset(), repr=False)
    # Public keys (files, or folders of *.pub) whose signatures a model needs to be served;
    # empty = signatures are not checked (the log and /models say so).
    trusted_keys: Annotated[tuple[Path, ...], NoDecode] = ()
    protect_docs_and_metrics: bool = False  # /docs, /redoc, /openapi.json, /metrics need a key too
    inference_threads: int = Field(default=0, ge=0, description="0 = one per core; 1 on CUDA")
    torch_threads: int = Field(default=0, ge=0, description="0 = cores / inference_threads")
    decode_threads: int = Field(default=0, ge=0, description="0 = one per CPU core")
    # Every core by default: a lone request's forward runs on all of them (runtime/threads.py).
    lone_batch_threads: int = Field(
        default=0, ge=0, description="a batch running alone: 1 = off, 0 = every core (CPU), N"
    )
    compute_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="inference and decode threads run this many nice steps below the event loop",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    access_log: bool = True  # one app.access line per request (INFO)

    # What one client may cost the server, and how long it may take to send (issue 16).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="request line + headers")
    max_header_count: int = Field(default=100, ge=8)
    max_url_bytes: int = Field(default=8 * 1024, ge=256)
    max_receiving_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024 * 1024, description="request bodies read at once"
    )
    header_timeout_s: float = Field(default=10.0, gt=0.0)
    body_timeout_s: float = Field(default=15.0, gt=0.0, description="longest silence in a body")
    min_body_rate_bytes_s: int = Field(default=4096, ge=0, description="after body_timeout_s")
    keep_alive_timeout_s: float = Field(default=5.0, gt=0.0)
    max_connections: int = Field(default=512, ge=1)
    shutdown_drain_s: float = Field(default=2.0, ge=0.0, description="listener open after SIGTERM")

    # Reference galleries (README "Reference galleries"): the embedded SQLite store lives in
    # GALLERY_DIR unless GALLERY_URL names a PostgreSQL database that replicas share.
    gallery_dir: Path = Path("galleries")
    gallery_url: str | None = Field(default=None, repr=False, pattern=r"^postgres(ql)?://")
    gallery_max_references_per_product: int = Field(default=50, ge=1, le=10_000)
    gallery_max_products: int = Field(default=10_000, ge=1)
    gallery_duplicate_distance: int = Field(
        default=9, ge=0, le=64, description="differing bits of the 64-bit perceptual hash"
    )

    # Access control and models encrypted at rest (README "Operations"): named, scoped API keys
    # from a key file (salted hashes, `python -m app keys`), re-read when it changes; model
    # archives stored as model.pt.enc are decrypted in memory with one of MODEL_KEYS.
    api_keys_file: Path | None = None
    api_keys_reload_s: float = Field(
        default=5.0, ge=0.0, description="seconds between checks of the key file; 0 = never"
    )
    model_keys: Annotated[tuple[Path, ...], NoDecode] = ()  # key files, or folders of *.mkey

    # Model updates without restarts (README "Operations"): POST /admin/models/reload, and with
    # MODEL_WATCH_S > 0 a poll of the store that reloads once a change has settled.
    model_watch_s: float = Field(default=0.0, ge=0.0, description="0 = off; else poll every N s")
    retire_wait_s: float = Field(
        default=120.0, gt=0.0, description="longest wait for old requests before old models stop"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, description="uvicorn processes, each with every model")

    # The GPU path (README "Performance", "On a GPU"): half precision on CUDA, kept per model only
    # where a parity check at load agrees with fp32; JPEG uploads decoded on the GPU (nvJPEG).
    # Both off until measured on a GPU (bench/gpu.py).
    cuda_precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    gpu_decode: Literal["auto", "on", "off"] = Field(
        default="off", description="auto: on when the device is CUDA; on: CUDA required"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """Accept a comma-separated string, as environments only hold strings."""
        if isinstance(value, str):
            return frozenset(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("trusted_keys", "model_keys", mode="before")
    @classmethod
    def _split_trusted_keys(cls, value: object) -> object:
        """Accept a comma-separated string of paths."""
        if isinstance(value, str):
            return tuple(Path(item.strip()) for item in value.split(",") if item.strip())
        return value

    def default_model(self, task: Task) -> str:
        """The model a request of `task` gets when it names none ("none": no default)."""
        defaults: dict[Task, str] = {
            "classify": self.default_classifier,
            "detect": self.default_detector,
            "segment": self.default_segmenter,
        }
        return defaults[task]

    @property
    def max_request_bytes(self) -> int:
        """Largest body accepted: every image at its limit plus room for multipart framing."""
        return self.max_images_per_request * (self.max_image_bytes + 16 * 1024)
