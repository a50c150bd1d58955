"""The live service with the shipped models, and a headless Chromium driven by WebDriver."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from app.config import Settings
from tests.conftest import ROOT
from tests.server.conftest import LiveServer, run_live_server

API_KEY = "browser-test-key"
# The shipped models the page is shown with: a plain and a calibrated classifier, the
# detector and the segmenter.
SHIPPED = ("imagenet-mobilenet-v2", "fashion-products", "objects-detector", "objects-segmenter")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def shipped_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the shipped models (links to models/); skip when one is missing."""
    missing = [name for name in SHIPPED if not (ROOT / "models" / name / "model.pt").is_file()]
    if missing:
        pytest.skip(f"models/{', '.join(missing)} not in this checkout (`make models` builds them)")
    store = tmp_path_factory.mktemp("shipped")
    for name in SHIPPED:
        (store / name).symlink_to(ROOT / "models" / name)
    return store


@pytest.fixture(scope="module")
def live_service(shipped_store: Path) -> Iterator[LiveServer]:
    """The service on loopback through our uvicorn config, an API key required."""
    settings = Settings(
        model_dir=shipped_store,
        api_keys=frozenset({API_KEY}),
        max_batch_size=2,
        max_batch_wait_ms=1.0,
        autotune_batch_size=False,
        optimize_cpu=False,  # start-up speed; the answers are the same model's
        max_images_per_request=4,
        decode_threads=2,
    )
    yield from run_live_server(settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's chromium in headless mode, through its chromedriver (`make browser`)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian chromium and chromium-driver (`make browser` installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root (CI containers)
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
