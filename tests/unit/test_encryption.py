"""Models encrypted at rest: key files, the format, the loader's refusals, rotation, signing."""

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from app.errors import ModelLoadError
from app.runtime.card import CARD_FILENAME, MODEL_FILENAME, parse_stored_card
from app.runtime.encryption import (
    ENCRYPTED_FILENAME,
    EncryptionError,
    ModelKey,
    decrypt_archive,
    encrypt_archive,
    encrypt_model,
    generate_model_key,
    load_model_keys,
    read_model_key,
)
from app.runtime.loader import discover_model_dirs, load_model
from app.runtime.signing import (
    SIGNATURE_FILENAME,
    generate_key_pair,
    load_trusted_keys,
    read_private_key,
    sign_model,
)
from tests.conftest import TINY_MODEL
from training.cli import main as training_main

CPU = torch.device("cpu")


@pytest.fixture
def key(tmp_path: Path) -> ModelKey:
    return generate_model_key(tmp_path / "keys" / "current.mkey")


@pytest.fixture
def folder(model_store: Path, tmp_path: Path) -> Path:
    """A copy of the tiny classifier's folder, still plain."""
    copy = tmp_path / "models" / TINY_MODEL
    shutil.copytree(model_store / TINY_MODEL, copy)
    return copy


@pytest.fixture
def encrypted(folder: Path, key: ModelKey) -> Path:
    encrypt_model(folder, key)
    return folder


def test_a_key_file_is_owner_only_never_replaced_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "a.mkey"
    made = generate_model_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_model_key(path) == made
    assert len(made.secret) == 32 and len(made.key_id) == 16
    assert made.secret.hex() not in repr(made)
    with pytest.raises(EncryptionError, match="exists already"):
        generate_model_key(path)
    assert read_model_key(path) == made


def test_key_files_that_cannot_work_are_named_without_their_content(tmp_path: Path) -> None:
    signing = tmp_path / "signing"
    generate_key_pair(signing)
    with pytest.raises(EncryptionError, match="not a model encryption key") as caught:
        read_model_key(signing.with_suffix(".key"))
    assert "PRIVATE KEY" not in str(caught.value)
    short = tmp_path / "short.mkey"
    short.write_text("vsmk1:AAAA\n")
    with pytest.raises(EncryptionError, match="32 bytes"):
        read_model_key(short)
    with pytest.raises(EncryptionError, match="does not exist"):
        load_model_keys([tmp_path / "absent"])
    with pytest.raises(EncryptionError, match=r"no \.mkey files"):
        load_model_keys([_empty(tmp_path)])


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_round_trip_and_every_alteration_is_refused(key: ModelKey) -> None:
    plaintext = os.urandom(4096)
    data = encrypt_archive(plaintext, key)
    assert plaintext not in data
    assert decrypt_archive(data, {key.key_id: key}) == (plaintext, key)
    assert encrypt_archive(plaintext, key)[:25] != data[:25]  # a fresh nonce every time
    for position in (30, len(data) - 1, 20):  # ciphertext, tag, nonce (authenticated header)
        altered = bytearray(data)
        altered[position] ^= 1
        with pytest.raises(EncryptionError, match="altered or corrupt"):
            decrypt_archive(bytes(altered), {key.key_id: key})
    with pytest.raises(EncryptionError, match="not a visionserve encrypted archive"):
        decrypt_archive(data[:30], {key.key_id: key})
    newer = bytearray(data)
    newer[4] = 2
    with pytest.raises(EncryptionError, match="format version 2"):
        decrypt_archive(bytes(newer), {key.key_id: key})


def test_the_folder_holds_no_plaintext_and_the_card_names_the_key(
    encrypted: Path, key: ModelKey, model_store: Path
) -> None:
    assert not (encrypted / MODEL_FILENAME).exists()
    stored = parse_stored_card((encrypted / CARD_FILENAME).read_bytes())
    assert stored.encryption is not None and stored.encryption.key_id == key.key_id
    plain_card = parse_stored_card((model_store / TINY_MODEL / CARD_FILENAME).read_bytes())
    assert stored.sha256 == plain_card.sha256  # the plaintext's hash, as before
    assert stored.card() == plain_card.card()
    assert key.secret.hex() not in (encrypted / CARD_FILENAME).read_text()
    assert discover_model_dirs(encrypted.parent) == [encrypted]


def test_the_loader_decrypts_in_memory_to_the_same_model(
    encrypted: Path, key: ModelKey, model_store: Path
) -> None:
    plain = load_model(model_store / TINY_MODEL, CPU)
    loaded = load_model(encrypted, CPU, model_keys={key.key_id: key})
    assert loaded.sha256 == plain.sha256
    pixels = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(loaded.module(pixels), plain.module(pixels))


def test_the_loader_writes_no_file(
    encrypted: Path, key: ModelKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"  # where Python and native temporary files would go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    before = _files(encrypted.parent)
    with _writes_recorded() as writes:
        load_model(encrypted, CPU, model_keys={key.key_id: key})
    assert writes == []
    assert _files(encrypted.parent) == before
    assert list(scratch.iterdir()) == []


def test_an_unknown_key_is_refused_naming_both_keys(
    encrypted: Path, key: ModelKey, tmp_path: Path
) -> None:
    other = generate_model_key(tmp_path / "other.mkey")
    with pytest.raises(ModelLoadError, match=f"encrypted with key {key.key_id}") as caught:
        load_model(encrypted, CPU, model_keys={other.key_id: other})
    assert f"other ({other.key_id})" in str(caught.value)
    with pytest.raises(ModelLoadError, match=r"held: none"):
        load_model(encrypted, CPU)


def test_altered_ciphertext_is_refused(encrypted: Path, key: ModelKey) -> None:
    path = encrypted / ENCRYPTED_FILENAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="altered or corrupt"):
        load_model(encrypted, CPU, model_keys={key.key_id: key})


def test_another_archive_under_the_right_key_is_refused_by_the_card_hash(
    encrypted: Path, key: ModelKey
) -> None:
    (encrypted / ENCRYPTED_FILENAME).write_bytes(encrypt_archive(b"another archive", key))
    with pytest.raises(ModelLoadError, match=r"model\.pt\.enc \(decrypted\): sha256 is"):
        load_model(encrypted, CPU, model_keys={key.key_id: key})


def test_mixed_up_folders_are_refused(encrypted: Path, key: ModelKey, model_store: Path) -> None:
    keys = {key.key_id: key}
    shutil.copy(model_store / TINY_MODEL / MODEL_FILENAME, encrypted / MODEL_FILENAME)
    with pytest.raises(ModelLoadError, match="holds both"):
        load_model(encrypted, CPU, model_keys=keys)
    (encrypted / ENCRYPTED_FILENAME).unlink()
    with pytest.raises(ModelLoadError, match=r"no model\.pt\.enc"):
        load_model(encrypted, CPU, model_keys=keys)
    shutil.copy(model_store / TINY_MODEL / CARD_FILENAME, encrypted / CARD_FILENAME)
    (encrypted / MODEL_FILENAME).rename(encrypted / ENCRYPTED_FILENAME)
    with pytest.raises(ModelLoadError, match="records no encryption"):
        load_model(encrypted, CPU, model_keys=keys)


def test_an_archive_changed_after_export_is_not_encrypted(folder: Path, key: ModelKey) -> None:
    (folder / MODEL_FILENAME).write_bytes(b"not the exported archive")
    with pytest.raises(EncryptionError, match="modified after export"):
        encrypt_model(folder, key)
    assert not (folder / ENCRYPTED_FILENAME).exists()


def test_rotation_re_encrypts_under_the_new_key_only(
    encrypted: Path, key: ModelKey, tmp_path: Path
) -> None:
    new = generate_model_key(tmp_path / "new.mkey")
    with pytest.raises(EncryptionError, match="give that key"):
        encrypt_model(encrypted, new)
    done = encrypt_model(encrypted, new, {key.key_id: key})
    assert (done.key_id, done.replaced_key_id) == (new.key_id, key.key_id)
    assert load_model(encrypted, CPU, model_keys={new.key_id: new}).card.name == TINY_MODEL
    with pytest.raises(ModelLoadError, match=f"encrypted with key {new.key_id}"):
        load_model(encrypted, CPU, model_keys={key.key_id: key})


def test_encrypt_then_sign_verifies(encrypted: Path, key: ModelKey, tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "signer")
    sign_model(encrypted, read_private_key(private))
    record = json.loads((encrypted / SIGNATURE_FILENAME).read_text())
    assert (
        record["model_sha256"] == parse_stored_card((encrypted / CARD_FILENAME).read_text()).sha256
    )
    loaded = load_model(encrypted, CPU, load_trusted_keys([public]), {key.key_id: key})
    assert loaded.signature.status == "verified"


def test_sign_then_encrypt_drops_the_stale_signature_unless_told_to_re_sign(
    folder: Path, tmp_path: Path
) -> None:
    private, public = generate_key_pair(tmp_path / "signer")
    trusted = load_trusted_keys([public])
    sign_model(folder, read_private_key(private))
    stale = (folder / SIGNATURE_FILENAME).read_bytes()
    key_file = tmp_path / "k.mkey"
    assert training_main(["keygen", "--encryption", "--out", str(tmp_path / "k")]) == 0
    key = read_model_key(key_file)
    assert training_main(["encrypt", "--key-file", str(key_file), str(folder)]) == 0
    assert not (folder / SIGNATURE_FILENAME).exists()
    with pytest.raises(ModelLoadError, match="unsigned"):
        load_model(folder, CPU, trusted, {key.key_id: key})
    # The old signature put back covers the card before encryption was recorded in it.
    (folder / SIGNATURE_FILENAME).write_bytes(stale)
    with pytest.raises(ModelLoadError, match=r"card\.json changed since signing"):
        load_model(folder, CPU, trusted, {key.key_id: key})
    new = tmp_path / "new"
    assert training_main(["keygen", "--encryption", "--out", str(new)]) == 0
    command = ["encrypt", "--key-file", f"{new}.mkey", "--old-key-file", str(key_file)]
    assert training_main([*command, "--sign-key", str(private), str(folder)]) == 0
    rotated = read_model_key(Path(f"{new}.mkey"))
    loaded = load_model(folder, CPU, trusted, {rotated.key_id: rotated})
    assert loaded.signature.status == "verified"


def test_the_commands_take_keys_from_files_only(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert training_main(["keygen", "--encryption", "--out", str(tmp_path / "k.mkey")]) == 0
    key = read_model_key(tmp_path / "k.mkey")
    assert (tmp_path / "k.mkey").stat().st_mode & 0o777 == 0o600
    secret_text = (tmp_path / "k.mkey").read_text().strip()
    caplog.set_level("INFO")
    # The key's text where its file is expected is refused, and not echoed.
    assert training_main(["encrypt", "--key-file", secret_text, str(folder)]) == 2
    assert "keys are read from files only" in caplog.text
    assert training_main(["encrypt", "--key-file", str(tmp_path / "k.mkey"), str(folder)]) == 0
    assert key.key_id in caplog.text
    assert secret_text.removeprefix("vsmk1:") not in caplog.text


def _files(*folders: Path) -> dict[Path, int]:
    return {
        path: path.stat().st_size
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file()
    }


@contextmanager
def _writes_recorded() -> Iterator[list[str]]:
    """Every file Python opens for writing while the block runs (an audit hook)."""
    writes: list[str] = []
    recording = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if not recording[0] or event != "open":
            return
        path, mode, flags = args
        by_mode = isinstance(mode, str) and any(letter in mode for letter in "wax+")
        by_flags = isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if by_mode or by_flags:
            writes.append(str(path))

    sys.addaudithook(hook)  # hooks cannot be removed: this one stops recording instead
    try:
        yield writes
    finally:
        recording[0] = False
