"""Key files: format, the permission check, and `dtn keys gen` as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dtn.security import Keyring, KeyringError
from dtn.security.keyfile import generate_key, load_keyring, write_keyring

ROOT = Path(__file__).resolve().parent.parent


def dtn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtn.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_write_then_load_roundtrip(tmp_path):
    keyring = Keyring({"mars-link": generate_key(256), "earth_sign": generate_key(128)})
    path = tmp_path / "keys.toml"
    write_keyring(path, keyring)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_keyring(path)
    assert list(loaded) == ["mars-link", "earth_sign"]
    assert loaded.get("mars-link") == keyring.get("mars-link")
    assert keyring.get("mars-link").hex() not in repr(loaded)  # a repr never shows key bytes


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602])
def test_a_key_file_open_to_others_is_refused_with_the_fix(tmp_path, mode):
    path = key_file(tmp_path, '[keys]\na = "' + "00" * 16 + '"\n', mode)
    with pytest.raises(KeyringError) as caught:
        load_keyring(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert f"{mode:o}" in str(caught.value)


def test_owner_only_modes_are_accepted(tmp_path):
    path = key_file(tmp_path, '[keys]\na = "' + "11" * 32 + '"\n', 0o400)
    assert load_keyring(path).get("a") == b"\x11" * 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[keys]\na = 5\n", "must be a hex string"),
        ('[keys]\na = "zz"\n', "not valid hex"),
        ('[keys]\na = "00ff"\n', "16 to 64 bytes"),
        ('[keys]\na = "' + "00" * 65 + '"\n', "16 to 64 bytes"),
        ('[keys]\n"bad id!" = "' + "00" * 16 + '"\n', "letters, digits"),
        ('keys = "x"\n', "must be a table"),
        ("[other]\n", "unexpected top-level"),
        ("[keys\n", "not a valid TOML"),
    ],
)
def test_malformed_key_files(tmp_path, text, message):
    with pytest.raises(KeyringError, match=message):
        load_keyring(key_file(tmp_path, text))


def test_not_a_regular_file_and_missing_file(tmp_path):
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyringError, match="not a regular file"):
        load_keyring(directory)
    with pytest.raises(KeyringError, match="cannot open"):
        load_keyring(tmp_path / "absent.toml")


def test_oversized_key_file_is_refused_before_parsing(tmp_path):
    path = key_file(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(KeyringError, match="more than a key file holds"):
        load_keyring(path)


def test_keyring_refuses_duplicates_and_bad_keys():
    keyring = Keyring({"a": bytes(16)})
    with pytest.raises(KeyringError, match="already"):
        keyring.with_key("a", bytes(16))
    with pytest.raises(KeyringError, match="16 to 64 bytes"):
        Keyring({"b": bytes(8)})
    with pytest.raises(KeyringError, match="key size"):
        generate_key(100)


def test_cli_keys_gen_creates_a_private_file_and_adds_keys(tmp_path):
    path = tmp_path / "node" / "keys.toml"
    path.parent.mkdir()
    result = dtn("keys", "gen", str(path), "--id", "mars-link", "--id", "mars-sign")
    assert result.returncode == 0, result.stderr
    assert "mars-link" in result.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    first = load_keyring(path)
    assert [len(first.get(key_id)) for key_id in first] == [32, 32]
    assert first.get("mars-link") != first.get("mars-sign")
    result = dtn("keys", "gen", str(path), "--id", "relay", "--bits", "128")
    assert result.returncode == 0, result.stderr
    second = load_keyring(path)
    assert second.get("mars-link") == first.get("mars-link") and len(second.get("relay")) == 16
    listing = dtn("keys", "list", str(path))
    assert listing.stdout.split("\n")[:3] == [
        "mars-link\t256 bits",
        "mars-sign\t256 bits",
        "relay\t128 bits",
    ]
    assert second.get("relay").hex() not in listing.stdout


def test_cli_keys_gen_refuses_taken_ids_and_open_files(tmp_path):
    path = tmp_path / "keys.toml"
    assert dtn("keys", "gen", str(path), "--id", "a").returncode == 0
    before = path.read_text()
    result = dtn("keys", "gen", str(path), "--id", "a")
    assert result.returncode == 1 and "already" in result.stderr
    assert path.read_text() == before
    os.chmod(path, 0o644)
    result = dtn("keys", "gen", str(path), "--id", "b")
    assert result.returncode == 1 and f"chmod 600 {path}" in result.stderr
    assert dtn("keys", "list", str(path)).returncode == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keys.toml"]  # no temporary files left
