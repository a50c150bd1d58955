"""The gallery routes through the real app: contract, limits, bad input, restarts, replicas."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.galleries.postgres import PostgresGalleryStore
from app.main import create_app
from tests.conftest import TINY_MODEL
from tests.galleries.conftest import clear
from tests.galleries.helpers import EMBEDDER, THRESHOLD, export_embedders
from tests.images import BLUE, GREEN, RED, encode, photo, solid

Files = list[tuple[str, tuple[str, bytes, str]]]


def gallery_settings(model_dir: Path, gallery_dir: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "gallery_dir": gallery_dir,
        "default_classifier": EMBEDDER,
        "autotune_batch_size": False,
        "optimize_cpu": False,
        "max_images_per_request": 6,
        "gallery_max_references_per_product": 4,
        "gallery_max_products": 3,
    }
    return Settings(**(values | changes))


@pytest.fixture
def settings(embedder_store: Path, tmp_path: Path) -> Settings:
    return gallery_settings(embedder_store, tmp_path / "galleries")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def images(*colours: tuple[int, int, int]) -> Files:
    return [("image", (f"{i}.png", solid(c), "image/png")) for i, c in enumerate(colours)]


def add(client: TestClient, product: str, files: Files, gallery: str = "shop") -> Any:
    answer = client.post(f"/galleries/{gallery}/products/{product}/references", files=files)
    assert answer.status_code == 200, answer.text
    return answer.json()


def match(client: TestClient, files: Files, **params: Any) -> Any:
    answer = client.post("/galleries/shop/match", files=files, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_create_add_match_list_delete(client: TestClient) -> None:
    created = client.put("/galleries/shop", json={"model": EMBEDDER})
    assert created.status_code == 201
    assert created.json()["threshold"] == THRESHOLD  # the card's, chosen on held-out data
    assert client.put("/galleries/shop", json={"model": EMBEDDER}).status_code == 200
    added = add(client, "red", images(RED, (200, 30, 30)))
    assert added["added"] == 2 and added["references"] == 2
    assert all(len(r["reference_id"]) == 32 for r in added["results"])
    add(client, "green", images(GREEN))

    answer = match(client, images((210, 25, 25), BLUE))
    near_red, blue = answer["results"]
    assert near_red["decision"] == "match"
    assert [m["product_id"] for m in near_red["matches"]] == ["red", "green"]
    assert near_red["matches"][0]["similarity"] > THRESHOLD
    assert blue["decision"] == "unknown"
    assert len(near_red["image_sha256"]) == 64

    described = client.get("/galleries/shop").json()
    assert described["products"] == [
        {"product_id": "green", "references": 1},
        {"product_id": "red", "references": 2},
    ]
    assert described["reference_count"] == 3 and described["embedding_bytes"] == 3 * 3 * 4
    assert [g["name"] for g in client.get("/galleries").json()["galleries"]] == ["shop"]
    deleted = client.delete("/galleries/shop/products/red")
    assert deleted.json()["deleted_references"] == 2
    assert match(client, images(RED))["results"][0]["decision"] == "unknown"
    assert client.delete("/galleries/shop").status_code == 204
    assert client.get("/galleries/shop").status_code == 404


def test_threshold_and_top_k_per_request(client: TestClient) -> None:
    client.put("/galleries/shop", json={"model": EMBEDDER, "threshold": 0.5})
    for product, colour in (("r", RED), ("g", GREEN), ("b", BLUE)):
        add(client, product, images(colour))
    query = images((150, 100, 20))
    [result] = match(client, query, top_k=1)["results"]
    assert len(result["matches"]) == 1
    similarity = result["matches"][0]["similarity"]
    strict = match(client, query, threshold=similarity + 0.001)
    loose = match(client, query, threshold=similarity)
    assert strict["results"][0]["decision"] == "unknown"
    assert loose["results"][0]["decision"] == "match"
    assert loose["threshold"] == pytest.approx(similarity)


def test_bad_input_and_refusals(client: TestClient) -> None:
    assert client.post("/galleries/none/match", files=images(RED)).json()["error"]["code"] == (
        "gallery_not_found"
    )
    refused = client.put("/galleries/plain", json={"model": TINY_MODEL})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "cannot_embed")
    assert client.put("/galleries/bad name", json={"model": EMBEDDER}).status_code == 422
    assert client.put("/galleries/x", json={"model": EMBEDDER, "extra": 1}).status_code == 422
    client.put("/galleries/shop", json={"model": EMBEDDER})
    long_id = "a" * 129
    for product in (long_id, "caf%C3%A9", "a%20b", "semi;colon"):
        answer = client.post(f"/galleries/shop/products/{product}/references", files=images(RED))
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "validation"), product
    assert client.post("/galleries/shop/match?topk=3", files=images(RED)).status_code == 422


def test_one_bad_upload_does_not_fail_its_neighbours(client: TestClient) -> None:
    client.put("/galleries/shop", json={"model": EMBEDDER})
    files = [*images(RED), ("image", ("broken.png", b"not an image", "image/png"))]
    answer = add(client, "red", files)
    good, bad = answer["results"]
    assert good["reference_id"] and bad["error"]["code"] == "invalid_image"
    assert len(bad["image_sha256"]) == 64 and answer["added"] == 1
    lone = client.post("/galleries/shop/products/red/references", files=files[1:])
    assert lone.status_code == 400  # a single unusable upload is the request's error
    assert client.get("/galleries/shop").json()["reference_count"] == 1


def test_limits_answer_413_and_store_nothing(client: TestClient) -> None:
    client.put("/galleries/shop", json={"model": EMBEDDER})
    add(client, "a", images(RED, RED, RED))
    over = client.post("/galleries/shop/products/a/references", files=images(RED, RED))
    assert (over.status_code, over.json()["error"]["code"]) == (413, "gallery_full")
    add(client, "b", images(GREEN))
    add(client, "c", images(BLUE))
    full = client.post("/galleries/shop/products/d/references", files=images(RED))
    assert full.status_code == 413 and full.json()["error"]["details"]["limit"] == 3
    assert client.get("/galleries/shop").json()["reference_count"] == 5


def test_near_duplicates_are_named(client: TestClient) -> None:
    client.put("/galleries/shop", json={"model": EMBEDDER})
    cat, coffee = photo("chelsea"), photo("coffee")
    stored = add(client, "cat", [("image", ("cat.jpg", encode(cat), "image/jpeg"))])
    cat_id = stored["results"][0]["reference_id"]
    smaller = cat.resize((cat.width // 2, cat.height // 2))
    queries = [
        ("image", ("copy.jpg", encode(smaller, quality=60), "image/jpeg")),
        ("image", ("other.jpg", encode(coffee), "image/jpeg")),
    ]
    copy, other = match(client, queries)["results"]
    assert copy["duplicate_of"]["reference_id"] == cat_id
    assert copy["duplicate_of"]["product_id"] == "cat"
    assert "duplicate_of" not in other
    again = add(client, "cat", queries[:1])["results"][0]
    assert again["duplicate_of"]["reference_id"] == cat_id


def test_galleries_survive_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as first:
        first.put("/galleries/shop", json={"model": EMBEDDER})
        add(first, "red", images(RED))
    with TestClient(create_app(settings)) as second:
        [result] = match(second, images(RED))["results"]
        assert result["decision"] == "match" and result["matches"][0]["product_id"] == "red"


def test_a_replaced_model_is_refused_with_how_to_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    with TestClient(create_app(settings)) as before:
        before.put("/galleries/shop", json={"model": EMBEDDER})
        add(before, "red", images(RED))
    replaced = tmp_path / "replaced-models"
    export_embedders(replaced, scale=2.0)  # same name, other weights: another sha256
    with TestClient(create_app(settings.model_copy(update={"model_dir": replaced}))) as after:
        for answer in (
            after.post("/galleries/shop/match", files=images(RED)),
            after.post("/galleries/shop/products/red/references", files=images(RED)),
        ):
            assert (answer.status_code, answer.json()["error"]["code"]) == (409, "gallery_conflict")
            assert "Rebuild it" in answer.json()["error"]["message"]
        conflict = after.put("/galleries/shop", json={"model": EMBEDDER})
        assert conflict.status_code == 409


def test_two_replicas_share_postgresql(
    embedder_store: Path, tmp_path: Path, postgres_url: str
) -> None:
    store = PostgresGalleryStore(postgres_url)
    clear(store)
    store.close()
    shared = gallery_settings(embedder_store, tmp_path / "unused", gallery_url=postgres_url)
    with TestClient(create_app(shared)) as one, TestClient(create_app(shared)) as two:
        one.put("/galleries/shop", json={"model": EMBEDDER})
        assert match(two, images(RED))["results"][0]["decision"] == "unknown"
        add(one, "red", images(RED))
        # the second replica notices the new generation on its next request
        assert match(two, images(RED))["results"][0]["decision"] == "match"
        two.delete("/galleries/shop/products/red")
        assert match(one, images(RED))["results"][0]["decision"] == "unknown"


@pytest.mark.anyio
async def test_concurrent_adds_and_matches_never_see_half_a_product(settings: Settings) -> None:
    """Products of four references are added while matches run; each sees 0 or 4 of one."""
    app = create_app(settings.model_copy(update={"gallery_max_products": 100}))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        await http.put("/galleries/shop", json={"model": EMBEDDER})

        async def add_one(product: int) -> None:
            colour = (200, 10 + product, 10)
            url = f"/galleries/shop/products/p{product}/references"
            answer = await http.post(url, files=images(colour, colour, colour, colour))
            assert answer.status_code == 200, answer.text

        async def look() -> list[int]:
            answer = await http.post(
                "/galleries/shop/match", files=images(RED), params={"top_k": 100}
            )
            products = [m["product_id"] for m in answer.json()["results"][0]["matches"]]
            listed = (await http.get("/galleries/shop")).json()["products"]
            return [p["references"] for p in listed] + [len(set(products)) - len(products)]

        jobs = [add_one(i) for i in range(6)] + [look() for _ in range(12)]
        seen = await asyncio.gather(*jobs)
    for counts in seen:
        if isinstance(counts, list):
            assert all(n == 4 for n in counts[:-1]) and counts[-1] == 0
