"""`visionserve-client classify|detect|match PATH...`: a line per image, or the answers as JSON."""

import argparse
import os
import sys
from collections.abc import Sequence

from visionserve_client.client import DEFAULT_URL, Client
from visionserve_client.errors import VisionServeError
from visionserve_client.files import expand_paths
from visionserve_client.models import ClassificationResult, DetectionResult, MatchResult


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit 1 when any image got an error, 2 when the service refused."""
    args = _parser().parse_args(argv)
    paths = expand_paths(args.paths)
    if not paths:
        print("no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    with Client(args.url, api_key=args.api_key, timeout_s=args.timeout) as client:
        try:
            if args.command == "classify":
                classified = client.classify(paths, model=args.model, top_k=args.top_k)
                answer = classified.model_dump_json(indent=2, exclude_none=True)
                lines = [
                    _classified(path, r) for path, r in zip(paths, classified.results, strict=True)
                ]
                failed = any(r.error for r in classified.results)
            elif args.command == "match":
                if not args.gallery:
                    print("match needs --gallery NAME", file=sys.stderr)
                    return 2
                matched = client.match(args.gallery, paths, top_k=args.top_k)
                answer = matched.model_dump_json(indent=2, exclude_none=True)
                lines = [_matched(path, r) for path, r in zip(paths, matched.results, strict=True)]
                failed = any(r.error for r in matched.results)
            else:
                detected = client.detect(paths, model=args.model)
                answer = detected.model_dump_json(indent=2, exclude_none=True)
                lines = [
                    _detected(path, r) for path, r in zip(paths, detected.results, strict=True)
                ]
                failed = any(r.error for r in detected.results)
        except VisionServeError as error:
            print(f"visionserve: {error}", file=sys.stderr)
            return 2
    print(answer if args.json else "\n".join(lines))
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionserve-client", description=__doc__)
    parser.add_argument("command", choices=["classify", "detect", "match"])
    parser.add_argument("paths", nargs="+", help="image files or folders of them")
    parser.add_argument("--url", default=os.environ.get("VISIONSERVE_URL", DEFAULT_URL))
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VISIONSERVE_API_KEY"),
        help="or the environment's VISIONSERVE_API_KEY",
    )
    parser.add_argument("--model", help="default: the service's default for the task")
    parser.add_argument("--gallery", help="match: the reference gallery to match against")
    parser.add_argument(
        "--top-k", type=int, default=3, help="classify: labels per image; match: products"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print the merged JSON answer")
    return parser


def _classified(path: object, result: ClassificationResult) -> str:
    if result.error is not None:
        return f"{path}: error {result.error.code}: {result.error.message}"
    best = result.predictions[0] if result.predictions else None
    label = f"{best.label} {best.score:.3f}" if best else "no predictions"
    decision = f" [{result.decision}]" if result.decision else ""
    return f"{path}: {label}{decision}"


def _matched(path: object, result: MatchResult) -> str:
    if result.error is not None:
        return f"{path}: error {result.error.code}: {result.error.message}"
    best = result.matches[0] if result.matches else None
    product = f"{best.product_id} {best.similarity:.3f}" if best else "no products"
    return f"{path}: {product} [{result.decision}]"


def _detected(path: object, result: DetectionResult) -> str:
    if result.error is not None:
        return f"{path}: error {result.error.code}: {result.error.message}"
    found = ", ".join(f"{d.label} {d.score:.2f}" for d in result.detections or [])
    return f"{path}: {found or 'nothing found'}"


if __name__ == "__main__":
    sys.exit(main())
