#!/usr/bin/env python3
"""Split requirements/serve.txt for the Dockerfile: torch's pins, and the rest with their hashes.

torch and torchvision come from TORCH_INDEX_URL, whose builds (+cpu, +cu130) are other files
than PyPI's, so they are pinned by version only; for a CUDA build, pip adds the NVIDIA libraries
that build pins exactly. Every other package installs from the lock, hash-checked. Stdlib only:
it runs in a bare python image.

    python split_lock.py LOCK OUT_DIR   ->  OUT_DIR/torch.txt, OUT_DIR/locked.txt
"""

import re
import sys
from pathlib import Path

TORCH = ("torch", "torchvision")
# PyPI's torch is a CUDA build: these are its CUDA libraries, not the service's dependencies.
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def blocks(lock: str) -> list[tuple[str, str, str]]:
    """(name, version, text) of each pinned requirement, its hash lines included."""
    found: list[tuple[str, str, str]] = []
    for chunk in re.split(r"\n(?=\S)", lock):
        match = PIN.match(chunk)
        if match:
            found.append((match[1].lower(), match[2], chunk.rstrip() + "\n"))
    return found


def split(lock: str) -> tuple[str, str]:
    """(torch.txt, locked.txt) for the lock's text."""
    pins = blocks(lock)
    torch = "".join(f"{name}=={version}\n" for name, version, _ in pins if name in TORCH)
    rest = "".join(
        text for name, _, text in pins if name not in TORCH and not CUDA_ONLY.match(name)
    )
    return torch, rest


def main() -> None:
    """Write the two files."""
    lock, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch, rest = split(lock.read_text())
    if torch.count("==") != len(TORCH):
        sys.exit(f"{lock}: expected pins for {', '.join(TORCH)}")
    (out / "torch.txt").write_text(torch)
    (out / "locked.txt").write_text(rest)


if __name__ == "__main__":
    main()
