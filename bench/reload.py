"""Reload under load: lost requests and the switch time, and RSS over repeated reloads.

`python -m bench.reload` copies the shipped `fashion-products` into a temporary store signed by
a throwaway key, prepares its next version (the same module under a bumped card, signed), runs
`python -m app` on loopback with that key trusted, and sends /classify from CONCURRENCY clients
for SECONDS. Half-way it swaps the new version into the folder and calls
POST /admin/models/reload. It prints: requests answered, requests lost (any answer but 200, or
none), when the first answer of the new version arrived after the reload was asked for, and
the last answer of the old one. Then RSS after start-up and after each of N reloads: of the
unchanged store, forced (every model loaded again), and alternating between the two versions.
"""

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import torch

from app.runtime.loader import load_model
from app.runtime.signing import generate_key_pair, read_private_key, sign_model
from app.security.keyfile import write_known_key
from app.security.keys import SCOPES
from bench.photos import load_photos
from bench.service import Service, running_service
from training.core.export import rewrite_archive

ROOT = Path(__file__).resolve().parent.parent
MODEL = "fashion-products"
ADMIN_KEY = "bench-admin"


@dataclass(kw_only=True)
class Answers:
    """Every answer of the load: when it arrived, its status, the version that answered."""

    rows: list[tuple[float, int, str | None]] = field(default_factory=list)


def _admin_key_file(work: Path) -> Path:
    path = work / "keys" / "api-keys.json"
    write_known_key(path, "bench-admin", ADMIN_KEY, SCOPES)
    return path


def main() -> None:
    """Run the reload-under-load probe and the RSS probe; print what they measured."""
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as scratch:
        work = Path(scratch)
        store, versions = _prepare(work)
        env = {
            "VISION_MODEL_DIR": str(store),
            "VISION_TRUSTED_KEYS": str(work / "keys" / "bench.pub"),
            "VISION_API_KEYS_FILE": str(_admin_key_file(work)),
            "VISION_DEFAULT_CLASSIFIER": MODEL,
            "VISION_DEFAULT_DETECTOR": "none",
            "VISION_DEFAULT_SEGMENTER": "none",
            "VISION_TUNING_DIR": str(work / "tuning"),
            "VISION_LOG_LEVEL": "WARNING",
            "VISION_ACCESS_LOG": "false",
            "VISION_QUEUE_LIMIT": "1024",
        }
        with running_service(ROOT, env, work / "service.log") as service:
            under_load = asyncio.run(_reload_under_load(service, store, versions, args))
            memory = asyncio.run(_rss_over_reloads(service, store, versions, args.reloads))
        print(json.dumps({"reload_under_load": under_load, "rss_mb": memory}, indent=2))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.reload", description=__doc__)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reloads", type=int, default=10)
    return parser


def _prepare(work: Path) -> tuple[Path, dict[str, Path]]:
    """A signed store holding MODEL, and both versions' signed folders to swap in."""
    generate_key_pair(work / "keys" / "bench")
    key = read_private_key(work / "keys" / "bench.key")
    old = work / "versions" / "old" / MODEL
    shutil.copytree(ROOT / "models" / MODEL, old)
    loaded = load_model(old, torch.device("cpu"))
    bumped = loaded.card.model_copy(update={"version": loaded.card.version + ".1"})
    staging = work / "versions" / "new"  # the kNN method's embeddings go along
    new = rewrite_archive(loaded.module, bumped, staging, references=loaded.references)
    for folder in (old, new):
        sign_model(folder, key)
    store = work / "models"
    store.mkdir()
    shutil.copytree(old, store / MODEL)
    return store, {"old": old, "new": new}


def _swap_in(store: Path, version: Path) -> None:
    """Replace the store's folder with `version` (a copy beside it, then one rename)."""
    incoming = store.parent / f".incoming-{time.monotonic_ns()}"
    shutil.copytree(version, incoming)
    outgoing = store.parent / f".outgoing-{time.monotonic_ns()}"
    (store / MODEL).rename(outgoing)
    incoming.rename(store / MODEL)
    shutil.rmtree(outgoing)


async def _reload_under_load(
    service: Service, store: Path, versions: dict[str, Path], args: argparse.Namespace
) -> dict[str, object]:
    photos = [data for _, data in load_photos()]
    answers = Answers()
    base = f"http://127.0.0.1:{service.port}"
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        start = time.monotonic()
        stop_at = start + args.seconds
        workers = [
            asyncio.create_task(_client(client, photos[i % len(photos)], stop_at, answers))
            for i in range(args.concurrency)
        ]
        await asyncio.sleep(args.seconds / 2)
        await asyncio.to_thread(_swap_in, store, versions["new"])
        asked = time.monotonic()
        reload = await client.post("/admin/models/reload", headers={"X-API-Key": ADMIN_KEY})
        answered = time.monotonic()
        await asyncio.gather(*workers)
    return _summary(answers, reload, asked, answered, start)


async def _client(
    client: httpx.AsyncClient, photo: bytes, stop_at: float, answers: Answers
) -> None:
    headers = {"content-type": "image/jpeg", "X-API-Key": ADMIN_KEY}
    while time.monotonic() < stop_at:
        try:
            answer = await client.post("/classify", content=photo, headers=headers)
        except httpx.HTTPError:
            answers.rows.append((time.monotonic(), 0, None))
            continue
        version = answer.json()["model"]["version"] if answer.status_code == 200 else None
        answers.rows.append((time.monotonic(), answer.status_code, version))


def _summary(
    answers: Answers, reload: httpx.Response, asked: float, answered: float, start: float
) -> dict[str, object]:
    body = reload.json()
    new_version = body["replaced"][0]["model"].split("@")[1] if body.get("replaced") else None
    new_times = [t for t, status, version in answers.rows if version == new_version]
    old_times = [
        t for t, status, version in answers.rows if status == 200 and version != new_version
    ]
    statuses: dict[str, int] = {}
    for _, status, _ in answers.rows:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": len(answers.rows),
        "lost": sum(count for status, count in statuses.items() if status != "200"),
        "statuses": statuses,
        "reload_status": reload.status_code,
        "replaced": body.get("replaced"),
        "reload_took_s": round(answered - asked, 3),
        "reload_asked_at_s": round(asked - start, 3),
        "first_new_answer_after_ask_s": round(min(new_times) - asked, 3) if new_times else None,
        "last_old_answer_after_ask_s": round(max(old_times) - asked, 3) if old_times else None,
    }


async def _rss_over_reloads(
    service: Service, store: Path, versions: dict[str, Path], count: int
) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{service.port}"
    headers = {"X-API-Key": ADMIN_KEY}
    results: dict[str, list[float]] = {"start": [round(service.rss_mb(), 1)]}
    async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
        for label, force, alternate in (
            ("unchanged", False, False),
            ("forced", True, False),
            ("alternating", False, True),
        ):
            results[label] = []
            for round_ in range(count):
                if alternate:
                    await asyncio.to_thread(
                        _swap_in, store, versions["old" if round_ % 2 == 0 else "new"]
                    )
                answer = await client.post("/admin/models/reload", params={"force": force})
                answer.raise_for_status()
                await asyncio.sleep(1.0)  # the old set retires once the reload request is over
                results[label].append(round(service.rss_mb(), 1))
    return results


if __name__ == "__main__":
    main()
