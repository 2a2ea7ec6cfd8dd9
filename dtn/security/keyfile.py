"""Reading and writing key files: the only file access in dtn.security.

A key file must be a regular file that only its owner can read or write (mode 600 or 400);
anything more open is refused with the chmod that fixes it. The mode is checked on the opened
file (fstat), so a file swapped between the check and the read cannot slip through.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from dtn.files import write_private

from .errors import KeyringError
from .keyring import Keyring

MAX_KEY_FILE_BYTES = 1 << 20
KEY_SIZES_BITS = (128, 192, 256, 384, 512)


def load_keyring(path: str | os.PathLike) -> Keyring:
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyringError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyringError(
                f"key file {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):o})"
                f"; keys must be private to their owner. Fix it with: chmod 600 {path}"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise KeyringError(
                f"key file {path} is {info.st_size} bytes, more than a key file "
                f"holds ({MAX_KEY_FILE_BYTES})"
            )
        raw = _read_at_most(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyringError(f"key file {path} grew past {MAX_KEY_FILE_BYTES} bytes while read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyringError(f"key file {path} is not UTF-8 text") from None
    return Keyring.parse(text, str(path))


def write_keyring(path: str | os.PathLike, keyring: Keyring) -> None:
    """Write atomically (temporary file, fsync, rename) with mode 600 from the start."""
    write_private(path, keyring.to_text().encode("utf-8"))


def generate_key(bits: int = 256) -> bytes:
    if bits not in KEY_SIZES_BITS:
        raise KeyringError(f"key size must be one of {KEY_SIZES_BITS} bits, not {bits}")
    return secrets.token_bytes(bits // 8)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
