"""Detached Ed25519 signatures over a model folder's archive and card.

`signature.json` beside model.pt names the signing key (a fingerprint of its public half) and
signs the sha256 of model.pt and of card.json, so neither file can change unnoticed. Training
signs (`python -m training sign`); the loader verifies against `VISION_TRUSTED_KEYS`.
An archive stored encrypted (`model.pt.enc`) is signed by the same two hashes: the plaintext's
(which card.json records and the loader checks after decrypting) and the final card.json's,
which names the encryption key; so encrypt first, then sign (encrypting rewrites card.json).
Keys are OpenSSH (`ssh-ed25519 ...`) or PEM public keys; private keys are PEM (PKCS#8).
"""

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.errors import ModelLoadError
from app.runtime.card import CARD_FILENAME, MODEL_FILENAME, parse_stored_card

SIGNATURE_FILENAME = "signature.json"
ALGORITHM = "ed25519"
PUBLIC_SUFFIX = ".pub"
# Signed before the hashes, so a signature made for another purpose never verifies here.
_CONTEXT = b"visionserve model signature v1\n"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file."""


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    """A public key the service accepts signatures from."""

    name: str  # the key file's stem, for messages and /models
    key_id: str
    public_key: Ed25519PublicKey


@dataclass(frozen=True, kw_only=True)
class SignatureCheck:
    """How a served model's signature was checked, for /models and the log."""

    status: Literal["verified", "not checked"]
    key_name: str | None = None
    key_id: str | None = None


NOT_CHECKED = SignatureCheck(status="not checked")


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: sha256 of its raw 32 bytes, first 16 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_trusted_keys(paths: Sequence[Path]) -> dict[str, TrustedKey]:
    """Every public key in `paths` (key files, or folders of `*.pub`), by key id."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob(f"*{PUBLIC_SUFFIX}")))
        elif path.is_file():
            files.append(path)
        else:
            raise KeyFileError(f"trusted key path {path} does not exist")
    if paths and not files:
        raise KeyFileError(f"no {PUBLIC_SUFFIX} files in {', '.join(map(str, paths))}")
    keys = [(file.stem, read_public_key(file)) for file in files]
    return {
        key_id(public): TrustedKey(name=name, key_id=key_id(public), public_key=public)
        for name, public in keys
    }


def read_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from an OpenSSH or PEM file."""
    data = path.read_bytes()
    key: object
    try:
        if data.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise KeyFileError(f"{path} is not a public key file: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}; model signatures use Ed25519")
    return key


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PEM (PKCS#8) or OpenSSH file."""
    data = path.read_bytes()
    key: object
    try:
        if data.startswith(b"-----BEGIN OPENSSH"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is not an unencrypted private key file: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}; model signatures use Ed25519")
    return key


def generate_key_pair(stem: Path) -> tuple[Path, Path]:
    """Write a new `stem.key` (private, owner-only) and `stem.pub` (OpenSSH); return both."""
    private = Ed25519PrivateKey.generate()
    private_path, public_path = stem.with_suffix(".key"), stem.with_suffix(PUBLIC_SUFFIX)
    if private_path.exists() or public_path.exists():
        raise KeyFileError(f"{private_path} or {public_path} exists already; not replacing a key")
    stem.parent.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.touch(mode=0o600)
    private_path.write_bytes(pem)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public_path.write_bytes(public + f" {stem.name}\n".encode())
    return private_path, public_path


def sign_model(directory: Path, private_key: Ed25519PrivateKey) -> Path:
    """Write `directory/signature.json` over its model.pt and card.json; return its path."""
    model_sha256, card_sha256 = _content_hashes(directory)
    signature = private_key.sign(_message(model_sha256, card_sha256))
    record = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "model_sha256": model_sha256,
        "card_sha256": card_sha256,
        "signature": base64.b64encode(signature).decode(),
    }
    path = directory / SIGNATURE_FILENAME
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def verify_model(
    directory: Path, model_sha256: str, card_bytes: bytes, trusted: dict[str, TrustedKey]
) -> SignatureCheck:
    """Check the folder's signature over the bytes the loader read; refuse with the reason.

    Unsigned, signed by a key not in `trusted`, and altered after signing are told apart.
    """
    path = directory / SIGNATURE_FILENAME
    if not path.is_file():
        raise ModelLoadError(
            f"{directory}: unsigned (no {SIGNATURE_FILENAME}); trusted keys are configured, so "
            "only signed models are served (`python -m training sign --key KEY "
            f"{directory}`)"
        )
    record = _read_record(path)
    key = trusted.get(str(record.get("key_id")))
    if key is None:
        raise ModelLoadError(
            f"{directory}: signed by key {record.get('key_id')}, which is not trusted "
            f"(trusted: {', '.join(f'{k.name} {k.key_id}' for k in trusted.values())})"
        )
    card_sha256 = hashlib.sha256(card_bytes).hexdigest()
    try:
        signature = base64.b64decode(str(record.get("signature")), validate=True)
        key.public_key.verify(signature, _message(model_sha256, card_sha256))
    except (InvalidSignature, ValueError):
        changed = _changed(record, model_sha256, card_sha256)
        raise ModelLoadError(
            f"{directory}: altered: the signature by {key.name} ({key.key_id}) does not match "
            f"this {MODEL_FILENAME} and {CARD_FILENAME} ({changed})"
        ) from None
    return SignatureCheck(status="verified", key_name=key.name, key_id=key.key_id)


def _content_hashes(directory: Path) -> tuple[str, str]:
    """The sha256 of the plaintext archive and of card.json, as the loader will compute them.

    For an archive stored encrypted, card.json's `sha256` is the plaintext's: the loader checks
    it after decrypting, so a signer vouches for the model without holding the decryption key.
    """
    model, card = directory / MODEL_FILENAME, directory / CARD_FILENAME
    if not card.is_file():
        raise KeyFileError(f"{directory} has no {CARD_FILENAME}: not an exported model folder")
    card_bytes = card.read_bytes()
    if model.is_file():
        return hashlib.sha256(model.read_bytes()).hexdigest(), hashlib.sha256(
            card_bytes
        ).hexdigest()
    try:
        stored = parse_stored_card(card_bytes)
    except ValueError as error:
        raise KeyFileError(f"{card} is not a valid card: {error}") from error
    if stored.encryption is None or not (directory / stored.encryption.file).is_file():
        raise KeyFileError(f"{directory} has no {MODEL_FILENAME}: not an exported model folder")
    return stored.sha256, hashlib.sha256(card_bytes).hexdigest()


def _message(model_sha256: str, card_sha256: str) -> bytes:
    return _CONTEXT + f"{MODEL_FILENAME} {model_sha256}\n{CARD_FILENAME} {card_sha256}\n".encode()


def _read_record(path: Path) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
        raise ModelLoadError(f"{path} is not an {ALGORITHM} model signature")
    return record


def _changed(record: dict[str, object], model_sha256: str, card_sha256: str) -> str:
    """Which file differs from what was signed, as far as the record's hashes tell."""
    changed = [
        name
        for name, signed, now in (
            (MODEL_FILENAME, record.get("model_sha256"), model_sha256),
            (CARD_FILENAME, record.get("card_sha256"), card_sha256),
        )
        if signed != now
    ]
    return f"{' and '.join(changed)} changed since signing" if changed else "signature invalid"
