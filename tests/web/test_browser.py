"""The page in a real headless Chromium against the live service and its shipped models."""

import base64
import io
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.images import encode, photo
from tests.server.conftest import LiveServer
from tests.web.conftest import API_KEY

pytestmark = pytest.mark.browser
WAIT_S = 30
ANSWERED_OR_FAILED = """
    return document.querySelector('#status').textContent.includes(' answered ')
        || !document.querySelector('#problem').hidden;
"""
OPAQUE_PIXELS = """
    const canvas = document.querySelector(arguments[0]);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let opaque = 0;
    for (let at = 3; at < data.length; at += 4) opaque += data[at] >= arguments[1] ? 1 : 0;
    return opaque;
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos (scikit-image's coffee and cat) as JPEG files, and a corrupt one."""
    folder = tmp_path_factory.mktemp("photos")
    files = {
        "coffee": encode(photo("coffee"), "JPEG", quality=90),
        "chelsea": encode(photo("chelsea"), "JPEG", quality=90),
        "corrupt": b"\xff\xd8\xff\xe0 this is not the rest of a JPEG",
    }
    for name, data in files.items():
        (folder / f"{name}.jpg").write_bytes(data)
    return {name: folder / f"{name}.jpg" for name in files}


def service_answer(
    live: LiveServer, task: str, files: list[Path], **params: str | float
) -> tuple[int, Any]:
    """What the service itself answers to the request the page should have made."""
    parts = [("image", (path.name, path.read_bytes(), "image/jpeg")) for path in files]
    answer = httpx2.post(
        f"http://{live.host}:{live.port}/{task}",
        files=parts,
        params=params,
        headers={"X-API-Key": API_KEY},
        timeout=60,
    )
    return answer.status_code, answer.json()


def open_page(browser: webdriver.Chrome, live: LiveServer, *, key: str | None = API_KEY) -> None:
    """Load the page with `key` already in the tab's session (as if typed earlier)."""
    browser.get(f"http://{live.host}:{live.port}/")
    browser.execute_script("sessionStorage.clear(); localStorage.clear();")
    if key is not None:
        browser.execute_script("sessionStorage.setItem('visionserve.apiKey', arguments[0]);", key)
        browser.refresh()
        wait_until(browser, lambda: browser.find_element(By.ID, "model").is_enabled())


def wait_until(browser: webdriver.Chrome, condition: Any) -> None:
    WebDriverWait(browser, WAIT_S).until(lambda _: condition())


def choose(browser: webdriver.Chrome, model: str, files: list[Path]) -> None:
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    browser.find_element(By.ID, "photos").send_keys("\n".join(str(path) for path in files))


def painted(browser: webdriver.Chrome, selector: str, minimum_alpha: int) -> int:
    """How many pixels of the first canvas matching `selector` have at least that alpha."""
    return int(browser.execute_script(OPAQUE_PIXELS, selector, minimum_alpha))


def drop(browser: webdriver.Chrome, name: str, data: bytes) -> None:
    """Drop a file on the photo zone, as a file manager would (a drop event with its files)."""
    browser.execute_script(
        """const files = new DataTransfer();
        const bytes = new Uint8Array(arguments[1]);
        files.items.add(new File([bytes], arguments[0], {type: 'image/jpeg'}));
        const zone = document.getElementById('drop');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: files, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true}));""",
        name,
        list(data),
    )


def run(browser: webdriver.Chrome) -> None:
    """Press Run and wait for the answer or the error."""
    browser.find_element(By.ID, "run").click()
    wait_until(browser, lambda: browser.execute_script(ANSWERED_OR_FAILED))


def cards(browser: webdriver.Chrome) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#results article.result")


def texts(parent: webdriver.Chrome | WebElement, selector: str) -> list[str]:
    return [element.text for element in parent.find_elements(By.CSS_SELECTOR, selector)]


def problem(browser: webdriver.Chrome) -> tuple[str, str]:
    """The request error shown: its code and message."""
    box = browser.find_element(By.ID, "problem")
    assert box.is_displayed()
    return texts(box, ".error-code")[0], texts(box, ".error-message")[0]


def assert_no_script_errors(browser: webdriver.Chrome) -> None:
    """Nothing failed in the page but the API errors the test asked for (CSP reports included)."""
    logs = browser.get_log("browser")  # type: ignore[no-untyped-call]  # selenium leaves it bare
    severe = [
        entry["message"]
        for entry in logs
        if entry["level"] == "SEVERE"
        and "the server responded with a status of" not in entry["message"]
    ]
    assert severe == []


def test_the_key_is_asked_for_and_kept_for_the_session(
    browser: webdriver.Chrome, live_service: LiveServer
) -> None:
    open_page(browser, live_service, key=None)
    wait_until(browser, lambda: browser.find_element(By.ID, "problem").is_displayed())
    refused = httpx2.get(f"http://{live_service.host}:{live_service.port}/models").json()["error"]
    assert problem(browser) == (refused["code"], refused["message"])
    assert browser.find_element(By.ID, "api-key") == browser.switch_to.active_element
    browser.switch_to.active_element.send_keys(API_KEY, Keys.ENTER)  # saves it, sends nothing
    wait_until(browser, lambda: browser.find_element(By.ID, "model").is_enabled())
    assert not browser.find_element(By.ID, "problem").is_displayed()
    groups = {
        group.get_attribute("label"): texts(group, "option")
        for group in browser.find_elements(By.CSS_SELECTOR, "#model optgroup")
    }
    assert groups == {
        "Classify": ["fashion-products v1.2.0 · calibrated", "imagenet-mobilenet-v2 v1.1.0"],
        "Detect": ["objects-detector v1.0.0"],
        "Segment": ["objects-segmenter v1.0.0"],
    }
    stored = browser.execute_script(
        "return [sessionStorage.getItem('visionserve.apiKey'), localStorage.length]"
    )
    assert stored == [API_KEY, 0]
    assert_no_script_errors(browser)


def test_classify_shows_labels_decisions_and_each_images_error(
    browser: webdriver.Chrome, live_service: LiveServer, photos: dict[str, Path], tmp_path: Path
) -> None:
    open_page(browser, live_service)
    files = [photos["coffee"], photos["corrupt"]]
    choose(browser, "imagenet-mobilenet-v2", files)
    run(browser)
    _, expected = service_answer(live_service, "classify", files, top_k=5)
    coffee, corrupt = cards(browser)
    labels = [p["label"] for p in expected["results"][0]["predictions"]]
    assert labels[0] == "espresso"
    assert texts(coffee, ".ranking .label") == labels
    assert texts(coffee, ".decision") == []  # this model has no calibration
    error = expected["results"][1]["error"]
    assert (texts(corrupt, ".error-code"), texts(corrupt, ".error-message")) == (
        [error["code"]],
        [error["message"]],
    )
    browser.save_screenshot(str(tmp_path / "classify.png"))  # docs/web-page.png, cropped

    browser.find_element(By.ID, "explain").send_keys(Keys.SPACE)
    run(browser)
    _, explained = service_answer(live_service, "classify", files, explain="true")
    grey = np.array(
        Image.open(io.BytesIO(base64.b64decode(explained["results"][0]["heat_map"]["data"])))
    )
    heat = browser.find_elements(By.CSS_SELECTOR, "canvas.heat")
    assert [(c.get_attribute("width"), c.get_attribute("height")) for c in heat] == [("600", "400")]
    assert painted(browser, "canvas.heat", 1) == (grey > 0).sum()
    browser.save_screenshot(str(tmp_path / "explain.png"))

    Select(browser.find_element(By.ID, "model")).select_by_value("fashion-products")
    run(browser)
    _, calibrated = service_answer(live_service, "classify", files, model="fashion-products")
    decision = calibrated["results"][0]["decision"]
    assert texts(cards(browser)[0], ".decision strong") == [decision]
    assert_no_script_errors(browser)


def test_detect_draws_the_boxes_and_the_slider_filters_or_asks_again(
    browser: webdriver.Chrome, live_service: LiveServer, photos: dict[str, Path], tmp_path: Path
) -> None:
    open_page(browser, live_service)
    choose(browser, "objects-detector", [photos["coffee"]])
    run(browser)
    _, expected = service_answer(live_service, "detect", [photos["coffee"]], score_threshold=0.5)
    detections = expected["results"][0]["detections"]
    assert detections, "the shipped detector finds objects in the coffee photo"
    boxes = browser.find_elements(By.CSS_SELECTOR, "svg.boxes rect.box")
    assert [box.get_attribute("data-label") for box in boxes] == [d["label"] for d in detections]
    first = detections[0]["box"]
    assert float(boxes[0].get_attribute("x") or "nan") == pytest.approx(first["x_min"])

    slider = browser.find_element(By.ID, "score-threshold")
    slider.send_keys(Keys.ARROW_RIGHT * 20)  # 0.50 -> 0.70: filtered here, no new request
    kept = [d for d in detections if d["score"] >= 0.7]
    assert len(browser.find_elements(By.CSS_SELECTOR, "rect.box")) == len(kept)
    assert texts(browser, ".count") == [
        f"{len(kept)} of {len(detections)} objects at score 0.70 or more"
    ]

    slider.send_keys(Keys.ARROW_LEFT * 50)  # 0.20: under the request's 0.50, so asked again
    _, lower = service_answer(live_service, "detect", [photos["coffee"]], score_threshold=0.2)
    found = len(lower["results"][0]["detections"])
    assert found > len(detections)
    wait_until(
        browser,
        lambda: texts(browser, ".count") == [f"{found} of {found} objects at score 0.20 or more"],
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "rect.box")) == found
    browser.save_screenshot(str(tmp_path / "detect.png"))
    assert_no_script_errors(browser)


def test_segment_draws_the_mask_with_its_legend(
    browser: webdriver.Chrome,
    live_service: LiveServer,
    photos: dict[str, Path],
    tmp_path: Path,
) -> None:
    open_page(browser, live_service)
    files = [photos["coffee"], photos["chelsea"]]
    choose(browser, "objects-segmenter", files)
    run(browser)
    _, expected = service_answer(live_service, "segment", files)
    classes = expected["results"][0]["classes"]
    legend = cards(browser)[0].find_elements(By.CSS_SELECTOR, ".legend tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in legend] == [
        c["label"] for c in classes
    ]
    assert [row.find_elements(By.TAG_NAME, "td")[2].text for row in legend] == [
        f"{c['pixels']:,}" for c in classes
    ]
    # Every pixel of every class but the background is painted, exactly as the PNG says.
    foreground = [c for c in classes if c["class_id"] != 0]
    assert painted(browser, "canvas.mask", 255) == sum(c["pixels"] for c in foreground)

    largest = foreground[0]
    toggle = browser.find_element(By.ID, f"show-0-{largest['class_id']}")
    toggle.send_keys(Keys.SPACE)  # hide one class from the keyboard
    hidden_total = sum(c["pixels"] for c in foreground) - largest["pixels"]
    assert painted(browser, "canvas.mask", 255) == hidden_total

    browser.find_element(By.ID, "opacity").send_keys(Keys.HOME)
    masks = browser.find_elements(By.CSS_SELECTOR, "canvas.mask")
    assert [mask.value_of_css_property("opacity") for mask in masks] == ["0", "0"]
    browser.find_element(By.ID, "opacity").send_keys(Keys.ARROW_RIGHT * 12)
    browser.save_screenshot(str(tmp_path / "segment.png"))
    assert_no_script_errors(browser)


def test_request_errors_are_shown_in_the_services_words(
    browser: webdriver.Chrome, live_service: LiveServer, photos: dict[str, Path]
) -> None:
    open_page(browser, live_service)
    Select(browser.find_element(By.ID, "model")).select_by_value("imagenet-mobilenet-v2")
    drop(browser, "dropped.jpg", photos["corrupt"].read_bytes())
    assert texts(browser, "#chosen .name") == ["dropped.jpg"]
    run(browser)
    status, expected = service_answer(live_service, "classify", [photos["corrupt"]])
    assert status == 400
    assert problem(browser) == (expected["error"]["code"], expected["error"]["message"])
    assert cards(browser) == []

    five = [photos["coffee"]] * 5  # the service takes 4 per request here
    browser.find_element(By.ID, "photos").send_keys("\n".join(str(path) for path in five))
    assert len(texts(browser, "#chosen .name")) == 5  # picking replaces what was dropped
    run(browser)
    status, expected = service_answer(live_service, "classify", five)
    assert status == 413
    assert problem(browser) == (expected["error"]["code"], expected["error"]["message"])
    assert "HTTP 413" in browser.find_element(By.ID, "problem").text
    assert_no_script_errors(browser)


def test_the_page_fits_a_phone(
    browser: webdriver.Chrome, live_service: LiveServer, photos: dict[str, Path], tmp_path: Path
) -> None:
    browser.set_window_size(390, 844)
    try:
        open_page(browser, live_service)
        choose(browser, "objects-detector", [photos["coffee"], photos["chelsea"]])
        run(browser)
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.boxes")) == 2
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        unlabelled = browser.execute_script(
            """return [...document.querySelectorAll('input, select')]
                .filter((field) => field.labels.length === 0 && !field.ariaLabel)
                .map((field) => field.id)"""
        )
        assert unlabelled == []
        browser.save_screenshot(str(tmp_path / "phone.png"))
    finally:
        browser.set_window_size(1280, 1600)
