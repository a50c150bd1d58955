"""`python -m training gallery build`: a gallery from an ImageFolder tree, one folder per product.

Through a running service's API (`--url`, the default: the service embeds, hashes and stores,
exactly as for any client) or straight into a store (`--store DIR` or `--store-url
postgresql://...`) with the same loader, decoder, preprocessing and hash as the service.
"""

import argparse
import hashlib
import json
import logging
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import torch

from app.galleries.phash import perceptual_hash
from app.galleries.records import GalleryLimits, NewGallery, NewReference, is_valid_name
from app.galleries.store import open_store
from app.imaging import decode_image
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel
from app.runtime.preprocessing import draft_size, preprocess_image
from training.classification.artifact import load_classifier
from training.core.datacheck import IMAGE_EXTENSIONS, TRAINING_LIMITS, DatasetError

logger = logging.getLogger(__name__)

_CHUNK = 8  # uploads per request: under the service's default MAX_IMAGES_PER_REQUEST (32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of gallery build."""
    add = parser.add_argument
    add("--model", required=True, help="the embedding model's name (its folder under --models)")
    add("--data", type=Path, required=True, help="a folder per product, photos inside")
    add("--gallery", required=True, help="the gallery's name")
    add("--url", default="http://127.0.0.1:8000", help="the running service (default)")
    add("--api-key", help="a key from the service's VISION_API_KEYS")
    add("--store", type=Path, help="write straight into this embedded store folder instead")
    add("--store-url", help="write straight into this PostgreSQL store instead")
    add("--models", type=Path, default=Path("models"), help="the model store (direct writes)")
    add("--threshold", type=float, help="match threshold (default: the model card's)")


def build_gallery(args: argparse.Namespace) -> int:
    """Add every product folder's photos; print the gallery as the store describes it."""
    products = _products(args.data)
    if args.store or args.store_url:
        _build_in_store(args, products)
    else:
        _build_over_http(args, products)
    return 0


def _products(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetError(f"--data {root}: no such folder")
    products = {
        folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }
    bad = [name for name in products if not is_valid_name(name)]
    if bad:
        raise DatasetError(f"product folder names must be 1-128 of [A-Za-z0-9._-]: {bad[:5]}")
    if not any(products.values()):
        raise DatasetError(f"--data {root}: no product folders with photos")
    return {name: paths for name, paths in products.items() if paths}


def _build_over_http(args: argparse.Namespace, products: dict[str, list[Path]]) -> None:
    body: dict[str, object] = {"model": args.model}
    if args.threshold is not None:
        body["threshold"] = args.threshold
    _request(args, "PUT", f"/galleries/{args.gallery}", json.dumps(body).encode(), None)
    for product, paths in products.items():
        for start in range(0, len(paths), _CHUNK):
            payload, content_type = _multipart(paths[start : start + _CHUNK])
            url = f"/galleries/{args.gallery}/products/{product}/references"
            answer = _request(args, "POST", url, payload, content_type)
            results: list[dict[str, Any]] = answer["results"]
            for result in results:
                if "error" in result:
                    logger.warning("%s: %s", result["filename"], result["error"]["message"])
        logger.info("%s: %d photo(s) sent", product, len(paths))
    print(json.dumps(_request(args, "GET", f"/galleries/{args.gallery}", None, None), indent=2))


def _request(
    args: argparse.Namespace, method: str, path: str, data: bytes | None, content_type: str | None
) -> dict[str, Any]:
    headers = {"Content-Type": content_type or "application/json"}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    request = urllib.request.Request(args.url + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=300) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _multipart(paths: list[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for path in paths:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def _build_in_store(args: argparse.Namespace, products: dict[str, list[Path]]) -> None:
    loaded = load_classifier(args.models / args.model)
    store = open_store(args.store or Path(), args.store_url)
    try:
        store.create_gallery(_new_gallery(loaded, args.gallery, args.threshold))
        most = max(len(paths) for paths in products.values())
        limits = GalleryLimits(max_references_per_product=most, max_products_per_gallery=10**9)
        for product, paths in products.items():
            store.add_references(args.gallery, product, _references(loaded, paths), limits)
            logger.info("%s: %d reference(s) stored", product, len(paths))
        record = store.gallery(args.gallery)
        print(f"{record.name}: {record.products} products, {record.references} references")
    finally:
        store.close()


def _new_gallery(loaded: LoadedModel, name: str, threshold: float | None) -> NewGallery:
    card = loaded.card
    if not card.embeds or card.embedding_dim is None:
        raise DatasetError(f"{card.name} has no embedding output")
    source = "given when the gallery was built"
    if threshold is None:
        if card.similarity is None:
            raise DatasetError(f"{card.name}'s card has no similarity threshold; give --threshold")
        threshold, source = card.similarity.threshold, card.similarity.data
    return NewGallery(
        name=name,
        model=card.name,
        model_sha256=loaded.sha256,
        embedding_dim=card.embedding_dim,
        threshold=threshold,
        threshold_source=source,
    )


def _references(loaded: LoadedModel, paths: list[Path]) -> list[NewReference]:
    spec = loaded.card.input
    decoded = [decode_image(path.read_bytes(), TRAINING_LIMITS, draft_size(spec)) for path in paths]
    pixels = torch.stack([preprocess_image(image.image, spec) for image in decoded])
    with torch.inference_mode():
        _, embeddings = split_outputs(loaded.module(pixels), loaded.card, len(paths))
    assert embeddings is not None
    return [
        NewReference(
            embedding=vector.float().numpy(),
            phash=perceptual_hash(image.image),
            image_sha256=_sha256(path),
            filename=path.name,
        )
        for path, image, vector in zip(paths, decoded, embeddings, strict=True)
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
