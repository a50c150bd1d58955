"""Model archives encrypted at rest: AES-256-GCM, key files, and the `model.pt.enc` format.

`model.pt.enc` is a 25-byte header (magic `VSME`, format version, the key's 8-byte id, the
12-byte nonce), then the ciphertext and the 16-byte GCM tag. The header is authenticated too
(associated data), so neither the key id nor the version can be swapped unnoticed. card.json
keeps the sha256 of the *plaintext* archive and records `encryption: {key_id, ...}`; the loader
decrypts in memory and checks that hash, so a model is the same model encrypted or not.

A key file holds one line, `vsmk1:` and the base64 of 32 random bytes, owner-readable only.
A key's id is a hash of it: it names the key in cards, logs and errors, and reveals nothing.
"""

import base64
import binascii
import hashlib
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.runtime.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    ArchiveEncryption,
    StoredCard,
    parse_stored_card,
    stored_card_json,
)

ENCRYPTED_FILENAME = "model.pt.enc"
KEY_SUFFIX = ".mkey"
FORMAT_VERSION = 1
_MAGIC = b"VSME"
_HEADER = struct.Struct(">4sB8s12s")  # magic, version, key id, nonce
_TAG_BYTES = 16
_KEY_PREFIX = "vsmk1:"
_KEY_BYTES = 32
_KEY_ID_CONTEXT = b"visionserve model key id\n"


class EncryptionError(ValueError):
    """A key file, an encrypted archive or a folder that cannot be used; says which and why."""


@dataclass(frozen=True, kw_only=True)
class ModelKey:
    """A 256-bit AES key for model archives, with its id and where it came from."""

    name: str  # the key file's stem, for messages
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class EncryptedHeader:
    """What an encrypted archive says about itself before it is decrypted."""

    version: int
    key_id: str
    nonce: bytes


def model_key_id(secret: bytes) -> str:
    """The key's id: 16 hex digits of a hash of the key, under a context of its own."""
    return hashlib.sha256(_KEY_ID_CONTEXT + secret).hexdigest()[:16]


def generate_model_key(path: Path) -> ModelKey:
    """Write a new random key to `path` (mode 0600; an existing file is never replaced)."""
    secret = secrets.token_bytes(_KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: not replacing a key by accident; 0600 from the first byte, not chmod later.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EncryptionError(f"{path} exists already; not replacing a key") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(_KEY_PREFIX + base64.b64encode(secret).decode() + "\n")
    return ModelKey(name=path.stem, key_id=model_key_id(secret), secret=secret)


def read_model_key(path: Path) -> ModelKey:
    """The key in `path`, or an EncryptionError naming the file (never showing its content)."""
    if str(path).startswith(_KEY_PREFIX):  # the key pasted where its file belongs: not echoed
        raise EncryptionError(
            "a model key was given where its file's path belongs; keys are read from files "
            "only, so they stay out of shell history and process lists"
        )
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise EncryptionError(f"{path}: cannot read the model key: {error}") from error
    if not text.startswith(_KEY_PREFIX):
        raise EncryptionError(
            f"{path} is not a model encryption key (made by `python -m training keygen "
            "--encryption`)"
        )
    try:
        secret = base64.b64decode(text.removeprefix(_KEY_PREFIX), validate=True)
    except binascii.Error:
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise EncryptionError(f"{path}: a model key is {_KEY_BYTES} bytes of base64")
    return ModelKey(name=path.stem, key_id=model_key_id(secret), secret=secret)


def load_model_keys(paths: Sequence[Path]) -> dict[str, ModelKey]:
    """Every key in `paths` (key files, or folders of `*.mkey`), by key id."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob(f"*{KEY_SUFFIX}")))
        elif path.is_file():
            files.append(path)
        else:
            raise EncryptionError(f"model key path {path} does not exist")
    if paths and not files:
        raise EncryptionError(f"no {KEY_SUFFIX} files in {', '.join(map(str, paths))}")
    keys = [read_model_key(file) for file in files]
    return {key.key_id: key for key in keys}


def encrypt_archive(plaintext: bytes, key: ModelKey) -> bytes:
    """header + ciphertext + tag, under a fresh random nonce."""
    header = _HEADER.pack(
        _MAGIC, FORMAT_VERSION, bytes.fromhex(key.key_id), secrets.token_bytes(12)
    )
    encryptor = Cipher(algorithms.AES(key.secret), modes.GCM(header[-12:])).encryptor()
    encryptor.authenticate_additional_data(header)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return header + ciphertext + encryptor.tag


def read_header(data: bytes) -> EncryptedHeader:
    """The header of an encrypted archive (not yet authenticated: decryption checks it)."""
    if len(data) < _HEADER.size + _TAG_BYTES or data[:4] != _MAGIC:
        raise EncryptionError(f"not a visionserve encrypted archive ({len(data)} bytes)")
    _, version, key_id, nonce = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise EncryptionError(
            f"encrypted with format version {version}; this service reads {FORMAT_VERSION}"
        )
    return EncryptedHeader(version=version, key_id=key_id.hex(), nonce=nonce)


def decrypt_archive(data: bytes, keys: dict[str, ModelKey]) -> tuple[bytes, ModelKey]:
    """The plaintext archive and the key that opened it, in memory only.

    Refused with the reason: not our format, an unknown key, or ciphertext, tag or header
    altered (GCM authenticates all three).
    """
    header = read_header(data)
    key = keys.get(header.key_id)
    if key is None:
        held = ", ".join(f"{k.name} ({k.key_id})" for k in keys.values()) or "none"
        raise EncryptionError(
            f"encrypted with key {header.key_id}, which VISION_MODEL_KEYS does not hold "
            f"(held: {held})"
        )
    body, tag = data[_HEADER.size : -_TAG_BYTES], data[-_TAG_BYTES:]
    decryptor = Cipher(algorithms.AES(key.secret), modes.GCM(header.nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(data[: _HEADER.size])
    try:
        plaintext = decryptor.update(body) + decryptor.finalize()
    except InvalidTag:
        raise EncryptionError(
            f"altered or corrupt: the authentication tag does not verify with key {key.name} "
            f"({key.key_id})"
        ) from None
    return plaintext, key


@dataclass(frozen=True, kw_only=True)
class EncryptedFolder:
    """What `encrypt_model` did to a folder."""

    path: Path
    key_id: str
    replaced_key_id: str | None  # the key the archive was encrypted with before (rotation)


def encrypt_model(
    directory: Path, key: ModelKey, old_keys: dict[str, ModelKey] | None = None
) -> EncryptedFolder:
    """Encrypt `directory`'s model.pt into model.pt.enc, record it in card.json, remove model.pt.

    An already encrypted folder is re-encrypted under `key` (rotation): `old_keys` must hold
    its current key. The plaintext is checked against card.json's sha256 first and never
    written anywhere. A signature.json over the old card.json no longer matches: re-sign.
    """
    stored = _read_card(directory)
    previous = stored.encryption
    plaintext = _plaintext(directory, stored, old_keys or {})
    target = directory / ENCRYPTED_FILENAME
    _atomic_write(target, encrypt_archive(plaintext, key))
    record = ArchiveEncryption(key_id=key.key_id)
    text = stored_card_json(stored.card(), stored.sha256, record)
    _atomic_write(directory / CARD_FILENAME, text.encode())
    (directory / MODEL_FILENAME).unlink(missing_ok=True)
    return EncryptedFolder(
        path=target, key_id=key.key_id, replaced_key_id=previous.key_id if previous else None
    )


def _plaintext(directory: Path, stored: StoredCard, old_keys: dict[str, ModelKey]) -> bytes:
    if stored.encryption is None:
        path = directory / MODEL_FILENAME
        if not path.is_file():
            raise EncryptionError(f"{directory}: no {MODEL_FILENAME} to encrypt")
        plaintext = path.read_bytes()
    else:
        if not old_keys:
            raise EncryptionError(
                f"{directory} is encrypted with key {stored.encryption.key_id} already; give "
                "that key (--old-key-file) to re-encrypt it under the new one"
            )
        try:
            plaintext, _ = decrypt_archive((directory / ENCRYPTED_FILENAME).read_bytes(), old_keys)
        except FileNotFoundError:
            raise EncryptionError(f"{directory}: no {ENCRYPTED_FILENAME}") from None
        except EncryptionError as error:
            raise EncryptionError(f"{directory / ENCRYPTED_FILENAME}: {error}") from None
    if hashlib.sha256(plaintext).hexdigest() != stored.sha256:
        raise EncryptionError(
            f"{directory}: the archive's sha256 differs from {CARD_FILENAME}'s; not encrypting "
            "an archive that was modified after export"
        )
    return plaintext


def _read_card(directory: Path) -> StoredCard:
    path = directory / CARD_FILENAME
    try:
        return parse_stored_card(path.read_bytes())
    except FileNotFoundError:
        raise EncryptionError(f"{directory}: no {CARD_FILENAME}; not a model folder") from None
    except ValueError as error:
        raise EncryptionError(f"{path} is not a valid card: {error}") from error


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
