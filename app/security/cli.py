"""`python -m app keys {add,list,remove}`: manage the API key file (VISION_API_KEYS_FILE)."""

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from app.config import Settings
from app.security.keyfile import KeyFileError, add_key, read_key_file, remove_key
from app.security.keys import ALL_MODELS, SCOPES, Scope


def main(argv: list[str]) -> int:
    """Run one `keys` command; the exit status (2: a bad file or option, with the reason)."""
    args = _parser().parse_args(argv)
    try:
        path = args.file or Settings().api_keys_file
        if path is None:
            raise KeyFileError("no key file: pass --file or set VISION_API_KEYS_FILE")
        if args.action == "add":
            return _add(path, args)
        if args.action == "list":
            return _list(path)
        remove_key(path, args.name)
        sys.stderr.write(f"removed {args.name!r} from {path}\n")
        return 0
    except KeyFileError as error:
        sys.stderr.write(f"keys: {error}\n")
        return 2


def _add(path: Path, args: argparse.Namespace) -> int:
    scopes = _scopes(args.scope)
    key = add_key(path, args.name, scopes, args.model or [ALL_MODELS], _expiry(args.expires))
    # The key alone on stdout (KEY=$(python -m app keys add ...)); it is shown this once only.
    sys.stdout.write(key + "\n")
    sys.stderr.write(
        f"added {args.name!r} to {path} ({', '.join(scopes)}); this key is not stored and is "
        "shown only now\n"
    )
    return 0


def _list(path: Path) -> int:
    now = datetime.now(UTC)
    for entry in read_key_file(path).keys:
        expiry = "never"
        if entry.expires is not None:
            expiry = entry.expires.isoformat() + (" (expired)" if entry.expires <= now else "")
        sys.stdout.write(
            f"{entry.name}\tscopes={','.join(entry.scopes)}\tmodels={','.join(entry.models)}"
            f"\texpires={expiry}\n"
        )
    return 0


def _scopes(given: list[str]) -> list[Scope]:
    scopes = [item.strip() for value in given for item in value.split(",") if item.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise KeyFileError(f"unknown scope(s) {unknown}; scopes: {', '.join(SCOPES)}")
    return cast(list[Scope], list(dict.fromkeys(scopes)))


def _expiry(text: str | None) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time; UTC when it names no zone."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KeyFileError(f"--expires {text!r}: give a date (2027-01-31) or an ISO time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app keys", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", type=Path, help="the key file (default VISION_API_KEYS_FILE)")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add", parents=[common], help="make a new key, print it once, store its hash"
    )
    add.add_argument("name", help="names the key in logs and metrics: 1-64 of [A-Za-z0-9._-]")
    add.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"repeat or separate by commas: {', '.join(SCOPES)}",
    )
    add.add_argument(
        "--model",
        action="append",
        help="a model name or pattern (imagenet-*) the key may use; repeat; default every model",
    )
    add.add_argument("--expires", help="date or ISO 8601 time after which the key is refused")
    actions.add_parser(
        "list", parents=[common], help="the keys' names, scopes, models and expiry (no secrets)"
    )
    remove = actions.add_parser(
        "remove", parents=[common], help="revoke a key (the service re-reads the file)"
    )
    remove.add_argument("name")
    return parser
