"""Reference galleries across two replicas sharing PostgreSQL, for real: `make compose-gallery`.

Builds the `scale` profile, brings it up with two replicas behind nginx and waits for healthy;
through nginx it does what scripts/gallery_demo.sh does (a gallery, two products from three
photos each, a new photo of one -> `match`, a photo of something else -> `unknown`). Then it
asks each replica on its own (`docker exec` + a stdlib HTTP call inside the container, as the
replicas publish no port) for the gallery and a match, adds a product through replica 1 and
times until replica 2 lists it, restarts replica 1 and PostgreSQL and checks that the gallery
is still whole, and always brings the stack down, its volumes included.
"""

import argparse
import base64
import functools
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from scripts import gallery_photos
from scripts.stack import Stack, StackError, docker, encode_multipart, expect, request_json

GALLERY = "demo"
MODEL = "imagenet-mobilenet-v2"  # the default classifier, as in scripts/gallery_demo.sh
DEMO_PRODUCTS = ("cat-chelsea", "espresso-cup")
EXTRA_PRODUCT = "astronaut"  # added through one replica, looked for on the other
PG_ISREADY = "/usr/lib/postgresql/15/bin/pg_isready"
IMAGES = ("visionserve:cpu", "visionserve-lb:nginx", "visionserve-postgres:15")
logger = logging.getLogger("compose-gallery")

# (method, path, body, content type) -> (status, decoded JSON); GET when the body is None.
Call = Callable[[str, str, bytes | None, str], tuple[int, Any]]

# Run inside a replica: one HTTP request to the service in the same container, described on
# stdin (the image has no curl, and the replicas publish no port of their own).
IN_REPLICA_REQUEST = """
import base64, json, sys, urllib.error, urllib.request
call = json.load(sys.stdin)
body = base64.b64decode(call["body"]) if call["body"] is not None else None
headers = {"Content-Type": call["content_type"]} if call["content_type"] else {}
request = urllib.request.Request("http://127.0.0.1:8000" + call["path"], data=body,
                                 headers=headers, method=call["method"])
try:
    with urllib.request.urlopen(request, timeout=120) as response:
        status, answer = response.status, response.read()
except urllib.error.HTTPError as error:
    status, answer = error.code, error.read()
print(json.dumps({"status": status, "body": answer.decode() or "null"}))
"""


@dataclass(frozen=True, kw_only=True)
class Photos:
    """The demo's photos (scripts/gallery_photos.py) and a third product's."""

    references: dict[str, list[bytes]]
    new_cat: bytes
    rocket: bytes
    astronaut: list[bytes]
    new_astronaut: bytes


def main() -> None:
    """Run every check; exit non-zero on the first failure, with the stack brought down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args()
    # The profile on, as compose 1.29 does not start a named service's profiled dependencies.
    stack = Stack(args.project, args.port, env={"VISION_API_KEYS": "", "COMPOSE_PROFILES": "scale"})
    photos = load_photos()
    report: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        stack.compose("build", "replica", "lb", "postgres")
        report["build_s"] = round(time.perf_counter() - started, 1)
        report["image_gb"] = {image: image_gb(image) for image in IMAGES}
        started = time.perf_counter()
        stack.compose("up", "-d", "--scale", "replica=2", "lb")
        stack.wait_healthy("replica", 2)
        stack.wait_healthy("lb")
        report["up_to_healthy_s"] = round(time.perf_counter() - started, 1)
        nginx = functools.partial(_through_nginx, f"http://127.0.0.1:{args.port}")
        report["demo_through_nginx"] = check_demo(nginx, photos)
        first, second = stack.containers("replica")
        replicas = {"replica 1": _in_replica(first), "replica 2": _in_replica(second)}
        report["each_replica"] = {
            name: check_gallery(call, photos, DEMO_PRODUCTS) for name, call in replicas.items()
        }
        report["shared"] = check_shared(replicas["replica 1"], replicas["replica 2"], photos)
        report["replica_restart"] = check_replica_restart(first, replicas["replica 1"], photos)
        (database,) = stack.containers("postgres")
        report["postgres_restart"] = check_postgres_restart(database, replicas, photos)
    finally:
        if not args.keep:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "60")
    logger.info("compose-gallery passed: %s", json.dumps(report))


def load_photos() -> Photos:
    """The photos scripts/gallery_demo.sh uploads, plus views of scikit-image's astronaut."""
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        gallery_photos.main(directory)
        references = {
            product: [(directory / product / f"{n}.jpg").read_bytes() for n in (1, 2, 3)]
            for product in DEMO_PRODUCTS
        }
        new_cat = (directory / "new-cat.jpg").read_bytes()
        rocket = (directory / "rocket.jpg").read_bytes()
    astronaut = gallery_photos.skimage_photo("astronaut")
    views = [gallery_photos.view(astronaut, box) for box in gallery_photos.REFERENCE_VIEWS]
    new_view = gallery_photos.view(astronaut, gallery_photos.NEW_VIEW).resize((300, 300))
    return Photos(
        references=references,
        new_cat=new_cat,
        rocket=rocket,
        astronaut=[_jpeg(image) for image in views],
        new_astronaut=_jpeg(ImageOps.mirror(new_view)),  # as the demo's new cat
    )


def image_gb(image: str) -> float:
    """The image's size in GB."""
    (config,) = json.loads(docker("image", "inspect", image))
    return round(float(config["Size"]) / 1e9, 2)


def check_demo(call: Call, photos: Photos) -> dict[str, Any]:
    """scripts/gallery_demo.sh: a gallery, two products, `match` and `unknown`."""
    call("DELETE", f"/galleries/{GALLERY}", None, "")  # a fresh gallery, whatever ran before
    status, answer = call(
        "PUT", f"/galleries/{GALLERY}", json.dumps({"model": MODEL}).encode(), "application/json"
    )
    expect(status == 201, f"PUT /galleries/{GALLERY} answered {status}: {answer}")
    for product in DEMO_PRODUCTS:
        add_product(call, product, photos.references[product])
    return check_gallery(call, photos, DEMO_PRODUCTS)


def add_product(call: Call, product: str, references: list[bytes]) -> None:
    """POST the product's reference photos; all of them are stored."""
    content_type, body = encode_multipart([(f"{n}.jpg", data) for n, data in enumerate(references)])
    path = f"/galleries/{GALLERY}/products/{product}/references"
    status, answer = call("POST", path, body, content_type)
    expect(status == 200, f"POST {path} answered {status}: {answer}")
    expect(answer["added"] == len(references), f"{product}: every reference stored: {answer}")


def check_gallery(call: Call, photos: Photos, products: tuple[str, ...]) -> dict[str, Any]:
    """The gallery lists `products` with 3 references each; new cat -> match, rocket -> unknown."""
    listed = listed_products(call)
    expect(listed == dict.fromkeys(products, 3), f"products {products} listed: {listed}")
    content_type, body = encode_multipart(
        [("new-cat.jpg", photos.new_cat), ("rocket.jpg", photos.rocket)]
    )
    status, answer = call("POST", f"/galleries/{GALLERY}/match?top_k=2", body, content_type)
    expect(status == 200, f"POST /galleries/{GALLERY}/match answered {status}: {answer}")
    cat, rocket = answer["results"]
    best = cat["matches"][0]
    expect(cat["decision"] == "match", f"new-cat.jpg is a match: {cat}")
    expect(best["product_id"] == "cat-chelsea", f"new-cat.jpg is cat-chelsea: {best}")
    expect(rocket["decision"] == "unknown", f"rocket.jpg is unknown: {rocket}")
    outcome = {
        "products": listed,
        "threshold": answer["threshold"],
        "new_cat": [cat["decision"], best["product_id"], round(best["similarity"], 4)],
        "rocket": [rocket["decision"], round(rocket["matches"][0]["similarity"], 4)],
    }
    logger.info("gallery: %s", json.dumps(outcome))
    return outcome


def listed_products(call: Call) -> dict[str, int]:
    """GET /galleries/{GALLERY}: product id -> reference count."""
    status, answer = call("GET", f"/galleries/{GALLERY}", None, "")
    expect(status == 200, f"GET /galleries/{GALLERY} answered {status}: {answer}")
    return {p["product_id"]: p["references"] for p in answer["products"]}


def check_shared(writer: Call, reader: Call, photos: Photos) -> dict[str, Any]:
    """A product added through one replica is listed, and matched, by the other."""
    add_product(writer, EXTRA_PRODUCT, photos.astronaut)
    added = time.perf_counter()
    polls = 0
    while EXTRA_PRODUCT not in listed_products(reader):
        polls += 1
        expect(time.perf_counter() - added < 30, f"{EXTRA_PRODUCT} listed by the other replica")
        time.sleep(0.2)
    seen_s = time.perf_counter() - added
    content_type, body = encode_multipart([("new-astronaut.jpg", photos.new_astronaut)])
    status, answer = reader("POST", f"/galleries/{GALLERY}/match?top_k=3", body, content_type)
    expect(status == 200, f"match on the other replica answered {status}: {answer}")
    (result,) = answer["results"]
    best = result["matches"][0]
    expect(best["product_id"] == EXTRA_PRODUCT, f"new astronaut is {EXTRA_PRODUCT}: {result}")
    outcome = {
        "seen_after_s": round(seen_s, 2),
        "polls_before_seen": polls,
        "new_astronaut": [result["decision"], best["product_id"], round(best["similarity"], 4)],
    }
    logger.info("shared store: %s", json.dumps(outcome))
    return outcome


def check_replica_restart(container: str, call: Call, photos: Photos) -> dict[str, Any]:
    """Restart a replica: once ready again, it lists and matches the whole gallery."""
    started = time.perf_counter()
    docker("restart", "--time", "60", container)
    _wait_until(lambda: call("GET", "/readyz", None, "")[0] == 200)
    outcome: dict[str, Any] = {"restart_to_ready_s": round(time.perf_counter() - started, 1)}
    outcome["after"] = check_gallery(call, photos, (*DEMO_PRODUCTS, EXTRA_PRODUCT))
    logger.info("replica restart: %s", json.dumps(outcome))
    return outcome


def check_postgres_restart(
    container: str, replicas: dict[str, Call], photos: Photos
) -> dict[str, Any]:
    """Restart PostgreSQL: every replica's next requests find the whole gallery (its volume)."""
    started = time.perf_counter()
    docker("restart", "--time", "60", container)
    _wait_until(lambda: _succeeds("docker", "exec", container, PG_ISREADY, "-h", "127.0.0.1"))
    outcome: dict[str, Any] = {"restart_to_ready_s": round(time.perf_counter() - started, 1)}
    for name, call in replicas.items():
        outcome[name] = check_gallery(call, photos, (*DEMO_PRODUCTS, EXTRA_PRODUCT))
    logger.info("postgres restart: %s", json.dumps(outcome))
    return outcome


def _wait_until(ready: Callable[[], bool], timeout_s: float = 300) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            if ready():
                return
        except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
            pass  # not listening yet, or the container is between stop and start
        time.sleep(0.5)
    raise StackError(f"not ready after {timeout_s:.0f} s")


def _succeeds(*command: str) -> bool:
    return subprocess.run(command, check=False, capture_output=True).returncode == 0


def _through_nginx(
    base: str, method: str, path: str, body: bytes | None, content_type: str
) -> tuple[int, Any]:
    return request_json(f"{base}{path}", body, content_type, method=method)


def _in_replica(container: str) -> Call:
    def call(method: str, path: str, body: bytes | None, content_type: str) -> tuple[int, Any]:
        described = {
            "method": method,
            "path": path,
            "body": base64.b64encode(body).decode() if body is not None else None,
            "content_type": content_type,
        }
        completed = subprocess.run(
            ["docker", "exec", "-i", container, "python", "-c", IN_REPLICA_REQUEST],
            input=json.dumps(described),
            check=True,
            text=True,
            stdout=subprocess.PIPE,
        )
        answer = json.loads(completed.stdout)
        return int(answer["status"]), json.loads(answer["body"])

    return call


def _jpeg(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="visionserve-gallery", help="compose project name")
    parser.add_argument("--port", type=int, default=18002, help="published on 127.0.0.1:PORT")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    return parser


if __name__ == "__main__":
    main()
