"""The API key file (VISION_API_KEYS_FILE): named keys as salted hashes, TOML or JSON.

```json
{"version": 1, "keys": [{"name": "shop-frontend", "salt": "...", "sha256": "...",
  "scopes": ["classify"], "models": ["imagenet-*"], "expires": "2027-01-01T00:00:00Z"}]}
```

The same in TOML is `version = 1` and one `[[keys]]` table per key. `python -m app keys`
writes JSON files; TOML files are the operator's, read as they are.
"""

import json
import os
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.security.keys import ALL_MODELS, ApiKey, KeyDigest, Scope, digest_key, new_key

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# A model name, or an fnmatch pattern of names ("*", "imagenet-*").
ModelPattern = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@*?\[\]-]{1,128}$")]


class KeyFileError(ValueError):
    """A key file that cannot be read or changed; the message names the file."""


class KeyEntry(BaseModel):
    """One named key: its salted hash and what it may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)
    models: tuple[ModelPattern, ...] = Field(default=(ALL_MODELS,), min_length=1)
    expires: AwareDatetime | None = None
    created: AwareDatetime | None = None

    def api_key(self) -> ApiKey:
        """The identity and rights requests made with this key get."""
        return ApiKey(
            name=self.name,
            scopes=frozenset(self.scopes),
            models=self.models,
            expires_at=self.expires,
        )

    def digest(self) -> KeyDigest:
        """How this key is recognised."""
        return KeyDigest(salt=bytes.fromhex(self.salt), sha256=bytes.fromhex(self.sha256))


class KeyFile(BaseModel):
    """The whole file: a format version and the keys, names unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    keys: tuple[KeyEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> "KeyFile":
        names = [entry.name for entry in self.keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"key names must be unique (they name keys in logs): {repeated}")
        return self


def read_key_file(path: Path) -> KeyFile:
    """The key file at `path` (TOML by its .toml suffix, else JSON), validated."""
    try:
        text = path.read_text()
    except OSError as error:
        raise KeyFileError(f"API key file {path}: {error}") from error
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return KeyFile.model_validate(data)
    except (ValueError, ValidationError) as error:  # JSON, TOML and schema errors
        raise KeyFileError(f"API key file {path} is invalid: {error}") from error


def add_key(
    path: Path,
    name: str,
    scopes: Sequence[Scope],
    models: Sequence[str] = (ALL_MODELS,),
    expires: datetime | None = None,
) -> str:
    """Add a new key named `name` to the file (created if missing); return the key, once."""
    current = read_key_file(path) if path.exists() else KeyFile()
    if any(entry.name == name for entry in current.keys):
        raise KeyFileError(f"{path} has a key named {name!r} already; remove it or pick another")
    key = new_key()
    digest = digest_key(key)
    try:
        entry = KeyEntry(
            name=name,
            salt=digest.salt.hex(),
            sha256=digest.sha256.hex(),
            scopes=tuple(scopes),
            models=tuple(models),
            expires=expires,
            created=datetime.now(UTC).replace(microsecond=0),
        )
    except ValidationError as error:
        raise KeyFileError(f"key {name!r}: {error}") from error
    _write(path, KeyFile(keys=(*current.keys, entry)))
    return key


def write_known_key(path: Path, name: str, key: str, scopes: Sequence[Scope]) -> None:
    """A key file holding one key chosen by the caller (tests and benchmarks; operators use
    `add_key`, which draws the key at random)."""
    digest = digest_key(key)
    entry = KeyEntry(
        name=name, salt=digest.salt.hex(), sha256=digest.sha256.hex(), scopes=tuple(scopes)
    )
    _write(path, KeyFile(keys=(entry,)))


def remove_key(path: Path, name: str) -> None:
    """Remove the key named `name`; it stops working when the service next reads the file."""
    current = read_key_file(path)
    kept = tuple(entry for entry in current.keys if entry.name != name)
    if len(kept) == len(current.keys):
        raise KeyFileError(f"{path} has no key named {name!r}")
    _write(path, current.model_copy(update={"keys": kept}))


def _write(path: Path, content: KeyFile) -> None:
    """Replace the file atomically (a running service never reads half of it), owner-only."""
    if path.suffix == ".toml":
        raise KeyFileError(
            f"{path}: `keys` writes JSON key files; edit a TOML one by hand (README 'API keys')"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(content.model_dump_json(indent=2, exclude_none=True) + "\n")
    temporary.replace(path)
