"""The API key file and the `keys` command: hashes only, TOML or JSON, names unique, the
key ring's expiry and plain keys."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.__main__ import main as app_main
from app.console import main as console_main
from app.errors import Unauthorized
from app.security.keyfile import KeyFileError, add_key, read_key_file, remove_key
from app.security.keyring import KeyRing, KeyRingSource
from app.security.keys import NON_ADMIN_SCOPES


def test_the_file_holds_salted_hashes_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = add_key(path, "shop", ["classify"], ["imagenet-*"])
    second = add_key(path, "till", ["classify"])
    text = path.read_text()
    assert first not in text and second not in text
    assert path.stat().st_mode & 0o777 == 0o600
    entries = {entry.name: entry for entry in read_key_file(path).keys}
    assert entries["shop"].salt != entries["till"].salt
    assert entries["shop"].digest().matches(first)
    assert not entries["shop"].digest().matches(second)
    assert entries["shop"].models == ("imagenet-*",)
    with pytest.raises(KeyFileError, match="already"):
        add_key(path, "shop", ["detect"])


def test_a_toml_key_file_is_read(tmp_path: Path) -> None:
    json_file = tmp_path / "keys.json"
    key = add_key(json_file, "shop", ["classify", "galleries:read"])
    (entry,) = read_key_file(json_file).keys
    toml_file = tmp_path / "keys.toml"
    toml_file.write_text(
        "version = 1\n\n[[keys]]\n"
        f'name = "shop"\nsalt = "{entry.salt}"\nsha256 = "{entry.sha256}"\n'
        'scopes = ["classify", "galleries:read"]\nexpires = 2030-01-01T00:00:00Z\n'
    )
    ring = KeyRing(KeyRingSource(path=toml_file))
    found = ring.authenticate([key])
    assert found.name == "shop"
    assert found.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(KeyFileError, match="edit a TOML one by hand"):
        add_key(toml_file, "other", ["classify"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"version": 1, "keys": [{"name": "a", "salt": "00", "sha256": "11"}]}', "salt"),
        ('{"version": 2, "keys": []}', "version"),
        ("{not json", "invalid"),
    ],
)
def test_an_invalid_file_is_refused_with_the_reason(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=reason):
        KeyRing(KeyRingSource(path=path))


def test_repeated_names_and_unknown_scopes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    add_key(path, "shop", ["classify"])
    data = json.loads(path.read_text())
    data["keys"].append(data["keys"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="unique"):
        read_key_file(path)
    data["keys"] = [data["keys"][0] | {"scopes": ["classify", "everything"]}]
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="everything"):
        read_key_file(path)


def test_expiry_is_checked_on_each_request(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    soon = datetime(2030, 1, 1, tzinfo=UTC)
    key = add_key(path, "shop", ["classify"], expires=soon)
    clock = [soon - timedelta(seconds=1)]
    ring = KeyRing(KeyRingSource(path=path), now=lambda: clock[0])
    assert ring.authenticate([None, key]).name == "shop"
    clock[0] = soon
    with pytest.raises(Unauthorized, match="'shop' expired at 2030-01-01T00:00:00"):
        ring.authenticate([key])


def test_plain_keys_have_every_scope_but_admin_and_a_fingerprint_name() -> None:
    ring = KeyRing(KeyRingSource(plain=frozenset({"k1", "k2"})))
    found = ring.authenticate(["wrong", "k2"])
    assert found.scopes == NON_ADMIN_SCOPES and "admin" not in found.scopes
    assert found.name.startswith("unnamed-") and "k2" not in found.name
    assert ring.authenticate(["k1"]).name != found.name
    with pytest.raises(Unauthorized):
        ring.authenticate(["k3", None])


def test_the_keys_command_prints_the_key_once_and_manages_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    add = ["keys", "add", "shop", "--file", str(path), "--scope", "classify,detect"]
    with pytest.raises(SystemExit) as done:
        app_main(
            [*add, "--scope", "galleries:read", "--model", "tiny-*", "--expires", "2030-01-31"]
        )
    assert done.value.code == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("vsk_") and len(key) > 40
    (entry,) = read_key_file(path).keys
    assert entry.scopes == ("classify", "detect", "galleries:read")
    assert entry.expires == datetime(2030, 1, 31, tzinfo=UTC)
    assert KeyRing(KeyRingSource(path=path)).authenticate([key]).name == "shop"
    with pytest.raises(SystemExit) as done:
        app_main(["keys", "list", "--file", str(path)])
    listed = capsys.readouterr().out
    assert "shop\tscopes=classify,detect,galleries:read\tmodels=tiny-*" in listed
    assert key not in listed
    with pytest.raises(SystemExit) as done:
        app_main(["keys", "add", "bad", "--file", str(path), "--scope", "everything"])
    assert done.value.code == 2
    assert "unknown scope" in capsys.readouterr().err
    remove_key(path, "shop")
    assert read_key_file(path).keys == ()


def test_the_console_script_reaches_the_keys_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(SystemExit) as done:
        console_main(["keys", "add", "ci", "--scope", "metrics", "--file", str(path)])
    assert done.value.code == 0
    key = capsys.readouterr().out.strip()
    assert KeyRing(KeyRingSource(path=path)).authenticate([key]).name == "ci"
