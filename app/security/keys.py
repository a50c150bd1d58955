"""An API key's identity and rights: its name, scopes, models and expiry; hashing keys."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Literal, get_args

from app.errors import Forbidden

Scope = Literal[
    "classify",
    "detect",
    "segment",
    "galleries:read",
    "galleries:write",
    "models",
    "v2",
    "metrics",
    "docs",
    "admin",
]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# What a key of the plain VISION_API_KEYS list may do, and what an open service allows.
NON_ADMIN_SCOPES: frozenset[Scope] = frozenset(scope for scope in SCOPES if scope != "admin")
ALL_MODELS = "*"
KEY_PREFIX = "vsk_"


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """Who a request's key belongs to and what it may use (never the key itself)."""

    name: str
    scopes: frozenset[Scope]
    models: tuple[str, ...] = (ALL_MODELS,)  # names or fnmatch patterns
    expires_at: datetime | None = None
    anonymous: bool = False  # an open service (no keys configured): no key was asked for

    def require_scope(self, scope: Scope) -> None:
        """403 unless the key holds `scope`."""
        if scope in self.scopes:
            return
        if self.anonymous:
            raise Forbidden(
                f"This service has no API keys, so nobody may use the {scope!r} routes; give "
                f"it a key file (VISION_API_KEYS_FILE) with a key that has the {scope!r} scope.",
                missing_scope=scope,
            )
        raise Forbidden(
            f"The API key {self.name!r} lacks the {scope!r} scope this route needs.",
            key=self.name,
            missing_scope=scope,
            scopes=sorted(self.scopes),
        )

    def require_model(self, model: str) -> None:
        """403 unless the key may use `model`."""
        if not any(fnmatchcase(model, pattern) for pattern in self.models):
            raise Forbidden(
                f"The API key {self.name!r} may not use model {model!r}.",
                key=self.name,
                model=model,
                models=list(self.models),
            )


# Who an open service's requests come from: any non-admin route, any model.
OPEN_ACCESS = ApiKey(name="anonymous", scopes=NON_ADMIN_SCOPES, anonymous=True)


@dataclass(frozen=True, kw_only=True)
class KeyDigest:
    """How a key is recognised: a random salt and sha256(salt + key)."""

    salt: bytes
    sha256: bytes

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` is the key (compared in constant time)."""
        return hmac.compare_digest(_digest(self.salt, candidate), self.sha256)


def digest_key(key: str) -> KeyDigest:
    """A fresh salted digest of `key`."""
    salt = secrets.token_bytes(16)
    return KeyDigest(salt=salt, sha256=_digest(salt, key))


def new_key() -> str:
    """A new random key: 256 bits, URL-safe, recognisable by its prefix in leak scanners."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _digest(salt: bytes, key: str) -> bytes:
    # A single salted sha256 is enough for 256-bit random keys: stretching (scrypt, argon2)
    # protects guessable passwords, and would cost every request milliseconds (README).
    return hashlib.sha256(salt + key.encode()).digest()
