"""The keys a running service accepts: the key file's named keys and the plain list.

The key file is re-read when it changes (checked at most every API_KEYS_RELOAD_S), so keys
are added, rotated and revoked without a restart; a file that turns invalid is logged and
the keys read before keep working.
"""

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from app.errors import Unauthorized
from app.security.keyfile import KeyFileError, read_key_file
from app.security.keys import NON_ADMIN_SCOPES, OPEN_ACCESS, ApiKey, KeyDigest, digest_key

logger = logging.getLogger(__name__)

# Keys recognised before, by a hash of the key: a dict look-up instead of a salted hash per
# entry (README "API keys": 4 us with 1 entry, 490 us with 100, by scanning). Bounded, and
# emptied whenever the file is re-read, so a revoked key is never found here.
_KNOWN_LIMIT = 4096
_UNAUTHORIZED = "A valid API key is required (Authorization: Bearer <key>, or X-API-Key: <key>)."


@dataclass(frozen=True, kw_only=True)
class _Accepted:
    digest: KeyDigest
    key: ApiKey


@dataclass(frozen=True, kw_only=True)
class KeyRingSource:
    """Where the accepted keys come from."""

    plain: frozenset[str] = frozenset()  # VISION_API_KEYS: unnamed, every non-admin scope
    path: Path | None = None  # VISION_API_KEYS_FILE
    reload_s: float = 5.0  # 0 = read once


class KeyRing:
    """Recognises a request's key and tells who it belongs to (the event loop is its only user)."""

    def __init__(
        self,
        source: KeyRingSource,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self._clock = clock
        self._now = now
        self._plain = [_plain_key(key) for key in sorted(source.plain)]
        self._named: list[_Accepted] = []
        self._known: dict[bytes, ApiKey] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = clock()
        if source.path is not None:
            self._named = _read_named(source.path)  # a bad file at start-up stops the start
            self._stamp = _stamp(source.path)

    @property
    def open(self) -> bool:
        """Whether no key is configured at all (every request is let in, admin routes excepted)."""
        return not self.source.plain and self.source.path is None

    def names(self) -> list[str]:
        """The names of the accepted keys, for the start-up log."""
        return [accepted.key.name for accepted in (*self._named, *self._plain)]

    def authenticate(self, offered: Sequence[str | None]) -> ApiKey:
        """Who the first valid offered key belongs to; 401 when none is valid or it expired."""
        if self.open:
            return OPEN_ACCESS
        self._refresh()
        expired: ApiKey | None = None
        for candidate in offered:
            key = self._identify(candidate) if candidate else None
            if key is None:
                continue
            if key.expires_at is not None and key.expires_at <= self._now():
                expired = key
                continue
            return key
        if expired is not None:
            assert expired.expires_at is not None
            raise Unauthorized(
                f"The API key {expired.name!r} expired at {expired.expires_at.isoformat()}.",
                key=expired.name,
                expired_at=expired.expires_at.isoformat(),
            )
        raise Unauthorized(_UNAUTHORIZED)

    def _identify(self, candidate: str) -> ApiKey | None:
        fingerprint = hashlib.sha256(candidate.encode()).digest()
        known = self._known.get(fingerprint)
        if known is not None:
            return known
        # Every digest is computed, so the time taken says nothing about which key matched.
        matches = [
            item.key for item in (*self._named, *self._plain) if item.digest.matches(candidate)
        ]
        if not matches:
            return None  # unknown keys are not remembered: a flood of them costs no memory
        if len(self._known) >= _KNOWN_LIMIT:
            self._known.clear()
        self._known[fingerprint] = matches[0]
        return matches[0]

    def _refresh(self) -> None:
        path = self.source.path
        if path is None or self.source.reload_s <= 0:
            return
        if self._clock() - self._checked < self.source.reload_s:
            return
        self._checked = self._clock()
        try:
            stamp = _stamp(path)
            if stamp == self._stamp:
                return
            named = _read_named(path)
        except (KeyFileError, OSError) as error:
            logger.error("API key file not reloaded, the keys read before stay valid: %s", error)
            return
        self._named, self._stamp = named, stamp
        self._known.clear()
        logger.info("API key file %s reloaded: %d key(s)", path, len(named))


def _read_named(path: Path) -> list[_Accepted]:
    return [
        _Accepted(digest=entry.digest(), key=entry.api_key()) for entry in read_key_file(path).keys
    ]


def _plain_key(key: str) -> _Accepted:
    # Named by the fingerprint the logs used before keys had names: traceable, not usable.
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:8]
    api_key = ApiKey(name=f"unnamed-{fingerprint}", scopes=NON_ADMIN_SCOPES)
    return _Accepted(digest=digest_key(key), key=api_key)


def _stamp(path: Path) -> tuple[int, int, int]:
    """What tells that the file changed: its inode (atomic replace), mtime and size."""
    status = path.stat()
    return status.st_ino, status.st_mtime_ns, status.st_size


def open_keyring(settings: Settings) -> KeyRing:
    """The service's key ring from its settings; logs which keys (by name) it accepts."""
    source = KeyRingSource(
        plain=settings.api_keys, path=settings.api_keys_file, reload_s=settings.api_keys_reload_s
    )
    keyring = KeyRing(source)
    if keyring.open:
        logger.warning("no API keys configured: every route is open except admin routes")
    else:
        logger.info("API keys accepted: %s", ", ".join(keyring.names()) or "none yet")
    return keyring
