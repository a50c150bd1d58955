"""The deployment, built and run for real: `make compose-test` (README "Deployment").

Builds the image, checks what is in it, brings the compose service up, waits for healthy,
classifies a real photo (and detects, once a detector is served), proves that SIGTERM drains
in-flight requests, and brings the stack down again, whatever happened.
"""

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.photos import load_photos
from scripts.stack import (
    Stack,
    container_state,
    docker,
    encode_multipart,
    expect,
    request_json,
)

IMAGE = "visionserve:cpu"
EXPECTED_LABEL = "espresso"  # scikit-image's `coffee` photo
# As in docker-compose.yml: within every engine's and host's limits.
NOFILE = ("--ulimit", "nofile=16384:16384")
logger = logging.getLogger("compose-test")

# Run inside the image: serving dependencies only, no compilers, no training code, not root.
IMAGE_PROBE = """
import importlib.util, json, os, shutil
print(json.dumps({
    "uid": os.getuid(),
    "compilers": [c for c in ("gcc", "cc", "g++", "make") if shutil.which(c)],
    "dev_packages": [m for m in ("training", "pytest", "matplotlib", "tqdm", "skimage")
                     if importlib.util.find_spec(m)],
    "models": sorted(os.listdir(os.environ["VISION_MODEL_DIR"])),
}))
"""


def main() -> None:
    """Run every check; exit non-zero on the first failure, with the stack brought down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args()
    stack = Stack(args.project, args.port, env={"VISION_API_KEYS": ""})
    base = f"http://127.0.0.1:{args.port}"
    photo = coffee_jpeg()
    numbers: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        stack.compose("build", "api")
        numbers["build_s"] = round(time.perf_counter() - started, 1)
        numbers["image_mb"] = check_image(IMAGE)
        started = time.perf_counter()
        stack.compose("up", "-d", "api")
        stack.wait_healthy("api")
        numbers["up_to_healthy_s"] = round(time.perf_counter() - started, 1)
        check_classify(base, photo)
        check_detect(base, photo)
        numbers["drain"] = check_drain(stack, base, photo)
    finally:
        if not args.keep:
            stack.down()
    logger.info("compose-test passed: %s", json.dumps(numbers))


def coffee_jpeg() -> bytes:
    """scikit-image's coffee photo as the JPEG a client would upload."""
    return dict(load_photos())["coffee.jpg"]


def check_image(image: str) -> float:
    """The image's size in MB, after checking its configuration and contents."""
    (config,) = json.loads(docker("image", "inspect", image))
    settings = config["Config"]
    user = settings.get("User") or config.get("User")  # podman reports some at the top level
    expect(user not in (None, "", "root", "0"), f"image runs as a non-root user: {user!r}")
    healthcheck = settings.get("Healthcheck") or config.get("Healthcheck")
    expect(healthcheck is not None, "image has a HEALTHCHECK")
    expect(settings.get("Cmd") == ["python", "-m", "app"], f"exec-form CMD: {settings['Cmd']}")
    probe = json.loads(docker("run", "--rm", *NOFILE, image, "python", "-c", IMAGE_PROBE))
    expect(probe["uid"] != 0, f"non-root user: uid {probe['uid']}")
    expect(not probe["compilers"], f"no compilers: {probe['compilers']}")
    expect(not probe["dev_packages"], f"no training or dev packages: {probe['dev_packages']}")
    expect("imagenet-mobilenet-v2" in probe["models"], f"models baked in: {probe['models']}")
    size_mb = round(float(config["Size"]) / 1e6, 1)
    logger.info("image %s: %.1f MB, %s", image, size_mb, probe)
    return size_mb


def check_classify(base: str, photo: bytes) -> None:
    """A real photo comes back as what it shows; a bad file in a batch fails alone."""
    content_type, body = encode_multipart([("coffee.jpg", photo), ("notes.jpg", b"not a photo")])
    status, answer = request_json(f"{base}/classify?top_k=3", body, content_type)
    expect(status == 200, f"POST /classify answered {status}: {answer}")
    good, bad = answer["results"]
    top = good["predictions"][0]
    expect(top["label"] == EXPECTED_LABEL, f"coffee.jpg is {EXPECTED_LABEL}: got {top}")
    expect(bad["error"]["code"] == "invalid_image", f"a bad file fails alone: {bad}")
    status, answer = request_json(f"{base}/classify", photo, "image/jpeg")
    expect(status == 200, f"raw image/jpeg body answered {status}: {answer}")
    logger.info("classify: coffee.jpg -> %s (%.3f)", top["label"], top["score"])


def check_detect(base: str, photo: bytes) -> None:
    """POST /detect with every served detector; skipped until one is served."""
    status, listing = request_json(f"{base}/models")
    expect(status == 200, f"GET /models answered {status}")
    detectors = [m["card"]["name"] for m in listing["models"] if m["card"]["task"] == "detect"]
    if not detectors:
        logger.info("detect: no detection model served, /detect not checked")
        return
    content_type, body = encode_multipart([("coffee.jpg", photo)])
    for name in detectors:
        status, answer = request_json(f"{base}/detect?model={name}", body, content_type)
        expect(status == 200, f"POST /detect?model={name} answered {status}: {answer}")
        (result,) = answer["results"]
        expect(isinstance(result.get("detections"), list), f"detections listed: {result}")
        logger.info("detect %s: %d detection(s)", name, len(result["detections"]))


def check_drain(stack: Stack, base: str, photo: bytes) -> dict[str, float]:
    """SIGTERM while batches are in flight: every one is answered, then the process exits 0."""
    (container,) = stack.containers("api")
    content_type, body = encode_multipart([(f"{i}.jpg", photo) for i in range(32)])

    def post() -> tuple[int, int, float]:
        status, answer = request_json(f"{base}/classify", body, content_type)
        return status, len(answer.get("results", [])), time.perf_counter()

    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(post) for _ in range(6)]
        time.sleep(0.5)
        stopping = time.perf_counter()
        stack.compose("stop", "api")  # SIGTERM, then up to stop_grace_period
        stop_s = time.perf_counter() - stopping
        answers = [future.result() for future in pending]
    expect(all(a[:2] == (200, 32) for a in answers), f"in-flight batches answered: {answers}")
    last_answer_s = max(a[2] for a in answers) - stopping
    expect(last_answer_s > 0, "some batch was still in flight when SIGTERM arrived")
    exit_code = container_state(container)["ExitCode"]
    expect(exit_code == 0, f"clean exit after draining: exit code {exit_code}")
    logger.info("drain: 6 x 32 images answered, the last %.1f s after SIGTERM", last_answer_s)
    return {"last_answer_after_sigterm_s": round(last_answer_s, 1), "stop_s": round(stop_s, 1)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="visionserve-test", help="compose project name")
    parser.add_argument("--port", type=int, default=18000, help="published on 127.0.0.1:PORT")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    return parser


if __name__ == "__main__":
    main()
