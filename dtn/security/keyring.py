"""Named keys, and the text format of a key file (sans-I/O; keyfile.py reads and writes files).

A key file is TOML with one table, `[keys]`, mapping key ids to the key bytes in hex:

    # dtn key file: keep it private (chmod 600)
    [keys]
    mars-link = "5f0c...e1"   # 16 to 64 bytes

Key ids are 1 to 64 characters of letters, digits, '-' and '_' (TOML bare keys, so no quoting).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping

from .errors import KeyringError

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
MAX_KEYS = 1024


class Keyring:
    """An immutable set of keys by id."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        keys = dict(keys or {})
        if len(keys) > MAX_KEYS:
            raise KeyringError(f"{len(keys)} keys is more than the {MAX_KEYS} a keyring holds")
        for key_id, key in keys.items():
            check_key_id(key_id)
            if not isinstance(key, bytes) or not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
                size = len(key) if isinstance(key, bytes) else type(key).__name__
                raise KeyringError(
                    f"key {key_id!r}: a key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {size}"
                )
        self._keys = keys

    def get(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def with_key(self, key_id: str, key: bytes) -> Keyring:
        """A keyring with one more key; KeyringError if the id is taken."""
        if key_id in self._keys:
            raise KeyringError(f"key id {key_id!r} is already in the keyring")
        return Keyring({**self._keys, key_id: key})

    @classmethod
    def parse(cls, text: str, origin: str) -> Keyring:
        """A keyring from key file text; `origin` names the file in error messages."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise KeyringError(f"{origin}: not a valid TOML key file: {exc}") from None
        extra = set(document) - {"keys"}
        if extra:
            raise KeyringError(
                f"{origin}: unexpected top-level entries {sorted(extra)} "
                "(a key file holds one [keys] table)"
            )
        table = document.get("keys", {})
        if not isinstance(table, dict):
            raise KeyringError(f"{origin}: 'keys' must be a table of key id = \"hex\"")
        keys = {}
        for key_id, value in table.items():
            if not isinstance(value, str):
                raise KeyringError(f"{origin}: key {key_id!r} must be a hex string")
            try:
                keys[key_id] = bytes.fromhex(value)
            except ValueError:
                raise KeyringError(f"{origin}: key {key_id!r} is not valid hex") from None
        try:
            return cls(keys)
        except KeyringError as exc:
            raise KeyringError(f"{origin}: {exc}") from None

    def to_text(self) -> str:
        lines = [
            "# dtn key file: keep it private (chmod 600). Key ids map to key bytes in hex.",
            "[keys]",
        ]
        lines.extend(f'{key_id} = "{key.hex()}"' for key_id, key in self._keys.items())
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:  # never the key bytes
        return f"Keyring({sorted(self._keys)})"


def check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise KeyringError(f"key id {key_id!r} must be 1 to 64 letters, digits, '-' or '_'")
    return key_id
