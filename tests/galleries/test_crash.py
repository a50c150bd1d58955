"""Killing a writer mid-write leaves a sound store holding whole products only."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.galleries.sqlite import SqliteGalleryStore
from tests.conftest import ROOT
from tests.galleries.conftest import clear
from tests.galleries.writer import REFERENCES, open_from

KILLS = 4


def kill_mid_write(location: str, gallery: str, products_first: int) -> list[str]:
    """Start the writer, let it store some products, SIGKILL it at a random moment after."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.galleries.writer", location, gallery],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    try:
        reported = [writer.stdout.readline().strip() for _ in range(products_first)]
        assert all(reported), "the writer stopped early"
        time.sleep(random.uniform(0.0, 0.05))  # somewhere inside a later transaction
    finally:
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate()
    return reported + rest.split()


def check_whole(location: str, gallery: str, reported: list[str]) -> None:
    store = open_from(location)
    try:
        counts = {p.product_id: p.references for p in store.products(gallery)}
        assert set(reported) <= set(counts)  # everything reported stored survived
        assert set(counts.values()) == {REFERENCES}  # no product half added
        snapshot = store.snapshot(gallery)
        assert len(snapshot.reference_ids) == REFERENCES * len(counts)
        assert snapshot.gallery.generation == len(counts)
    finally:
        store.close()


@pytest.mark.parametrize("round_", range(KILLS))
def test_sqlite_survives_a_kill_mid_write(tmp_path: Path, round_: int) -> None:
    location = f"sqlite:{tmp_path}"
    reported = kill_mid_write(location, "shop", products_first=2 + round_)
    check_whole(location, "shop", reported)
    assert SqliteGalleryStore(tmp_path).integrity_problems() == []
    # and the store goes on taking writes after the crash
    more = kill_mid_write(location, "shop", products_first=1)
    check_whole(location, "shop", more)


@pytest.mark.parametrize("round_", range(2))
def test_postgresql_survives_a_kill_mid_write(postgres_url: str, round_: int) -> None:
    store = open_from(postgres_url)
    clear(store)
    store.close()
    reported = kill_mid_write(postgres_url, "shop", products_first=2 + round_)
    check_whole(postgres_url, "shop", reported)
