"""Gallery fixtures: the tiny embedder's store, and a real PostgreSQL server."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.galleries.postgres import PostgresGalleryStore
from app.galleries.sql import SqlGalleryStore
from app.galleries.sqlite import SqliteGalleryStore
from tests.conftest import tiny_card, tiny_module
from tests.galleries.helpers import export_embedders
from tests.galleries.postgres import PostgresUnavailable, throwaway_server
from training.core.export import export_model


@pytest.fixture(scope="session")
def embedder_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny embedder and a classifier that cannot embed."""
    store = tmp_path_factory.mktemp("gallery-models")
    export_embedders(store)
    export_model(tiny_module(), tiny_card(), store)
    return store


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server: VISION_TEST_POSTGRES_URL, or one started here for the session."""
    given = os.environ.get("VISION_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    # Not under pytest's tmp_path: as root, the unprivileged server owner must reach it.
    with tempfile.TemporaryDirectory(prefix="visionserve-pg-") as directory, ExitStack() as stack:
        Path(directory).chmod(0o755)
        try:
            url = stack.enter_context(throwaway_server(Path(directory) / "cluster"))
        except PostgresUnavailable as error:
            pytest.skip(f"PostgreSQL cannot be started here: {error}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlGalleryStore]:
    """An empty store of each backend."""
    if request.param == "sqlite":
        store: SqlGalleryStore = SqliteGalleryStore(tmp_path)
    else:
        store = PostgresGalleryStore(request.getfixturevalue("postgres_url"))
        clear(store)
    try:
        yield store
    finally:
        store.close()


def clear(store: SqlGalleryStore) -> None:
    """Remove every gallery (the PostgreSQL server is shared by the session's tests)."""
    for record in store.galleries():
        store.delete_gallery(record.name)
