"""What access control and encryption at rest cost: recognising a key, loading an encrypted model.

    python -m bench.access_costs [--model models/imagenet-mobilenet-v2] [--rounds 7]

Keys: one request's key check with 1, 10, 100 and 1000 keys in the file, on first use (every
salted hash compared) and for a key seen before, beside one scrypt check (n=2^14, r=8, p=1),
the stretching a password would get. Models: `load_model` of the folder as it is and of an
encrypted copy (both copied to a temporary store; the folder given is never changed), in
interleaved rounds so a busy machine slows both alike, and the decryption alone.
"""

import argparse
import hashlib
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from app.runtime.encryption import (
    ENCRYPTED_FILENAME,
    decrypt_archive,
    encrypt_model,
    generate_model_key,
)
from app.runtime.loader import load_model
from app.security.keyfile import add_key, read_key_file
from app.security.keyring import KeyRing, KeyRingSource
from app.security.keys import KeyDigest


def main() -> None:
    """Print both measurements."""
    parser = argparse.ArgumentParser(prog="python -m bench.access_costs", description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/imagenet-mobilenet-v2"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure_keys(Path(folder))
        measure_loads(args.model, Path(folder), args.rounds)


def measure_keys(folder: Path) -> None:
    """Microseconds per request to recognise a key, by the number of keys in the file."""
    for count in (1, 10, 100, 1000):
        path = folder / f"keys-{count}.json"
        keys = [add_key(path, f"key-{index}", ["classify"]) for index in range(count)]
        ring = KeyRing(KeyRingSource(path=path, reload_s=0))
        offered = [None, keys[-1]]

        # A key not seen before is compared with every entry's salted hash, as here.
        digests = [entry.digest() for entry in read_key_file(path).keys]
        first = _per_call_s(partial(_scan, digests, keys[-1]), 200)
        again = _per_call_s(partial(ring.authenticate, offered), 5000)
        print(
            f"{count:5d} key(s): first use {first * 1e6:9.1f} us, "
            f"a key seen before {again * 1e6:6.1f} us"
        )
    salt = secrets.token_bytes(16)
    key = b"vsk_" + secrets.token_bytes(32)
    scrypt = _per_call_s(lambda: hashlib.scrypt(key, salt=salt, n=2**14, r=8, p=1), 5)
    print(f"scrypt n=2^14 r=8 p=1: {scrypt * 1000:.1f} ms per check")


def measure_loads(model: Path, folder: Path, rounds: int) -> None:
    """Milliseconds to load the model plain and encrypted, and to decrypt it."""
    torch.set_num_threads(1)
    plain, encrypted = folder / "plain" / model.name, folder / "encrypted" / model.name
    shutil.copytree(model, plain)
    shutil.copytree(model, encrypted)
    key = generate_model_key(folder / "bench.mkey")
    encrypt_model(encrypted, key)
    keys = {key.key_id: key}
    data = (encrypted / ENCRYPTED_FILENAME).read_bytes()
    cpu = torch.device("cpu")
    steps: dict[str, Callable[[], object]] = {
        "plain": lambda: load_model(plain, cpu),
        "encrypted": lambda: load_model(encrypted, cpu, model_keys=keys),
        "decryption alone": lambda: decrypt_archive(data, keys),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(_per_call_s(step, 1, warm=False))
    print(f"{model.name}: {len(data) / 1e6:.1f} MB encrypted; {rounds} interleaved rounds")
    for name, values in times.items():
        print(
            f"  {name:17s} median {statistics.median(values) * 1000:7.1f} ms "
            f"({min(values) * 1000:.1f}..{max(values) * 1000:.1f})"
        )


def _scan(digests: list[KeyDigest], key: str) -> bool:
    return any([digest.matches(key) for digest in digests])  # every one, as the ring does


def _per_call_s(call: Callable[[], object], count: int, warm: bool = True) -> float:
    if warm:
        call()
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


if __name__ == "__main__":
    main()
