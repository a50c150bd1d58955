"""The gallery commands: build over a live service's API or into a store; evaluate-gallery."""

import json
from pathlib import Path

import pytest

from app.galleries.sqlite import SqliteGalleryStore
from tests.galleries.helpers import EMBEDDER
from tests.galleries.test_routes import gallery_settings
from tests.images import BLUE, GREEN, RED, solid
from tests.server.conftest import run_live_server
from training.cli import main

PRODUCTS = {"red": RED, "green": GREEN, "blue": BLUE}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An ImageFolder tree: a folder per product, six shades of its colour each."""
    root = tmp_path / "products"
    for name, (r, g, b) in PRODUCTS.items():
        (root / name).mkdir(parents=True)
        for shade in range(6):
            data = solid((max(0, r - 6 * shade), max(0, g - 5 * shade), max(0, b - 4 * shade)))
            (root / name / f"{shade}.png").write_bytes(data)
    return root


def test_build_straight_into_a_store(folder: Path, embedder_store: Path, tmp_path: Path) -> None:
    argv = ["gallery", "build", "--model", EMBEDDER, "--data", str(folder), "--gallery", "shop"]
    store_dir = tmp_path / "store"
    assert main([*argv, "--models", str(embedder_store), "--store", str(store_dir)]) == 0
    products = SqliteGalleryStore(store_dir).products("shop")
    assert {(p.product_id, p.references) for p in products} == {(n, 6) for n in PRODUCTS}


def test_build_through_the_api(folder: Path, embedder_store: Path, tmp_path: Path) -> None:
    settings = gallery_settings(
        embedder_store, tmp_path / "served", gallery_max_references_per_product=10
    )
    argv = ["gallery", "build", "--model", EMBEDDER, "--data", str(folder), "--gallery", "shop"]
    for server in run_live_server(settings):
        assert main([*argv, "--url", f"http://{server.host}:{server.port}"]) == 0
    products = SqliteGalleryStore(tmp_path / "served").products("shop")
    assert {(p.product_id, p.references) for p in products} == {(n, 6) for n in PRODUCTS}


def test_evaluate_gallery_reports_and_records_the_threshold(
    folder: Path, embedder_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "models"
    (store / EMBEDDER).mkdir(parents=True)
    for name in ("model.pt", "card.json"):
        (store / EMBEDDER / name).write_bytes((embedder_store / EMBEDDER / name).read_bytes())
    argv = ["evaluate-gallery", "--model", str(store / EMBEDDER), "--data", str(folder)]
    argv += ["--split", "all", "--references", "2", "--unknown-classes", "1", "--draws", "2"]
    assert main([*argv, "--no-progress", "--workers", "0", "--write-card"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["figures"]["top1"]["median"] == 1.0
    assert "not in it: red" in report["data"]
    card = json.loads((store / EMBEDDER / "card.json").read_text())
    assert card["similarity"]["threshold"] == pytest.approx(
        report["figures"]["threshold"]["median"], abs=1e-4
    )
