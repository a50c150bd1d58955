"""Do starts agree? Tune one model from fresh measurements N times in a row and compare choices.

    python -m bench.tuning_agreement [--model imagenet-mobilenet-v2] [--starts 10]
                                     [--env VISION_X=Y ...]

Each start is a new process running `python -m app tune` on a store holding only that model, with
an empty tuning folder of its own, so nothing is carried from one start to the next (no profile,
no warm caches): exactly what a service without a profile decides at start-up. Prints each
start's runtime, batch size and relative costs, and how many starts chose the most common
configuration. A profile makes every later start agree by construction; this measures the rule.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Run the starts and print how many agree."""
    args = _parser().parse_args()
    choices = []
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "models"
        store.mkdir()
        (store / args.model).symlink_to(args.model_dir / args.model)
        for start in range(args.starts):
            tuning = _one_start(store, Path(scratch) / f"tuning-{start}", args)
            choice = (tuning["runtime"], tuning["batch_size"])
            choices.append(choice)
            print(f"start {start + 1:>2}: {choice[0]:<9} batch {choice[1]:<3} {_costs(tuning)}")
    ((most, count),) = Counter(choices).most_common(1)
    print(f"{count} of {len(choices)} starts chose {most[0]}, batch {most[1]}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--env", nargs="*", default=[], help="VISION_*=value for every start")
    return parser


def _one_start(store: Path, tuning_dir: Path, args: argparse.Namespace) -> dict[str, object]:
    env = os.environ | {"VISION_MODEL_DIR": str(store), "VISION_TUNING_DIR": str(tuning_dir)}
    env |= {"VISION_LOG_LEVEL": "WARNING"} | dict(item.split("=", 1) for item in args.env)
    subprocess.run([sys.executable, "-m", "app", "tune"], env=env, cwd=ROOT, check=True)
    # The service keeps a profile per version (`name@version.json`); the store holds one model.
    (path,) = tuning_dir.glob(f"{args.model}@*.json")
    profile = json.loads(path.read_text())
    tuning: dict[str, object] = profile["tuning"]
    return tuning


def _costs(tuning: dict[str, object]) -> str:
    parts = []
    for name in ("runtime_trial", "batch_trial"):
        trial = tuning.get(name)
        if isinstance(trial, dict):
            costs = " ".join(f"{k}:{v:.2f}" for k, v in trial["relative_cost"].items())
            parts.append(f"[{costs}; {trial['rounds']} rounds]")
    return " ".join(parts)


if __name__ == "__main__":
    main()
