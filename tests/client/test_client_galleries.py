"""The client's gallery calls against a real service: create, add, match, list, delete."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from visionserve_client import AsyncClient, Client, VisionServeError
from visionserve_client.cli import main as cli

from tests.client.test_client import Served, serve
from tests.galleries.helpers import EMBEDDER, THRESHOLD, export_embedders
from tests.galleries.test_routes import gallery_settings
from tests.images import BLUE, GREEN, RED, solid


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The tiny colour embedder, at most 6 images per request and 4 references per product."""
    store = tmp_path / "models"
    export_embedders(store)
    yield from serve(gallery_settings(store, tmp_path / "galleries"))


def colour_photos(folder: Path, colour: tuple[int, int, int], count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        # Slightly different shades, so they are distinct photos of one product.
        path.write_bytes(solid((colour[0], colour[1], min(255, colour[2] + index))))
        paths.append(path)
    return paths


def test_a_gallery_from_creation_to_deletion(served: Served, tmp_path: Path) -> None:
    with Client(served.url) as client:
        created = client.create_gallery("shop", model=EMBEDDER)
        assert (created.name, created.model, created.threshold) == ("shop", EMBEDDER, THRESHOLD)
        assert client.create_gallery("shop", model=EMBEDDER).name == "shop"  # idempotent

        added = client.add_references("shop", "red-mug", colour_photos(tmp_path / "r", RED, 2))
        assert (added.product_id, added.added, added.references) == ("red-mug", 2, 2)
        client.add_references("shop", "green-mug", colour_photos(tmp_path / "g", GREEN, 1))

        matched = client.match("shop", [solid(RED), solid(BLUE)], top_k=2)
        red, blue = matched.results
        assert red.decision == "match" and red.matches and red.matches[0].product_id == "red-mug"
        assert blue.decision == "unknown"

        described = client.gallery("shop")
        assert {(p.product_id, p.references) for p in described.products} == {
            ("red-mug", 2),
            ("green-mug", 1),
        }
        assert [g.name for g in client.galleries().galleries] == ["shop"]

        assert client.delete_product("shop", "red-mug").deleted_references == 2
        client.delete_gallery("shop")
        with pytest.raises(VisionServeError) as missing:
            client.gallery("shop")
    assert missing.value.status == 404


def test_more_photos_than_one_request_takes_are_added_in_several(
    served: Served, tmp_path: Path
) -> None:
    photos = [*colour_photos(tmp_path / "a", RED, 2), *colour_photos(tmp_path / "b", GREEN, 2)]
    with Client(served.url, max_images_per_request=3) as client:
        client.create_gallery("shop", model=EMBEDDER)
        added = client.add_references("shop", "mixed", photos)
    assert added.added == 4 and added.references == 4
    assert [result.index for result in added.results] == [0, 1, 2, 3]
    assert all(result.reference_id for result in added.results)


def test_matching_many_images_keeps_upload_order_and_per_image_errors(
    served: Served, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images: list[Path | bytes] = [solid(RED), broken, *[solid(GREEN)] * 7]
    with Client(served.url) as client:  # assumes 32 per request; the service takes 6
        client.create_gallery("shop", model=EMBEDDER)
        client.add_references("shop", "green", [solid(GREEN)])
        matched = client.match("shop", images)
    assert [result.index for result in matched.results] == list(range(9))
    assert matched.results[1].error is not None
    assert matched.results[1].error.code == "invalid_image"
    assert [result.decision for result in matched.results[2:]] == ["match"] * 7


def test_the_async_client_has_the_same_gallery_calls(served: Served) -> None:
    async def scenario() -> tuple[str | None, int]:
        async with AsyncClient(served.url) as client:
            await client.create_gallery("shop", model=EMBEDDER, threshold=0.5)
            await client.add_references("shop", "blue", [solid(BLUE)])
            matched = await client.match("shop", [solid(BLUE)])
            listed = await client.galleries()
            await client.delete_gallery("shop")
            return matched.results[0].decision, len(listed.galleries)

    assert asyncio.run(scenario()) == ("match", 1)


def test_a_wrong_model_is_the_services_error(served: Served) -> None:
    with Client(served.url) as client, pytest.raises(VisionServeError) as refused:
        client.create_gallery("shop", model="no-such-model")
    assert refused.value.status == 404
    assert refused.value.code == "model_not_found"


def test_the_cli_matches_a_folder(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(served.url) as client:
        client.create_gallery("shop", model=EMBEDDER)
        client.add_references("shop", "red", [solid(RED)])
    folder = tmp_path / "uploads"
    colour_photos(folder, RED, 2)
    (folder / "blue.png").write_bytes(solid(BLUE))

    code = cli(["match", str(folder), "--gallery", "shop", "--url", served.url])

    lines = sorted(capsys.readouterr().out.splitlines())
    assert code == 0
    assert lines[0].endswith("0.png: red 1.000 [match]")
    assert lines[1].endswith("1.png: red 1.000 [match]")
    assert lines[2].startswith(f"{folder / 'blue.png'}: red ") and lines[2].endswith("[unknown]")
