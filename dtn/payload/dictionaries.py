"""Trained Zstandard dictionaries: training, checking, and a load/save pair for their files.

A payload of a few hundred bytes (one telemetry record per bundle) barely compresses on its
own: zstd has seen nothing like it yet. A dictionary trained on past records gives it that
history, and both ends must have the same one (compression.py, algorithm 2). The file is
zstd's own dictionary format (RFC 8878 5, what `zstd --train` writes): the magic number, a
32-bit dictionary id, entropy tables and content. A dictionary holds pieces of its samples,
so it is saved private to its owner, like the data it was trained on.

Sans-I/O apart from load_dictionary and save_dictionary.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zstandard

from dtn.files import write_private

DICTIONARY_MAGIC = b"\x37\xa4\x30\xec"  # RFC 8878 5, little-endian 0xEC30A437
MAX_DICTIONARY_BYTES = 1 << 20
DEFAULT_DICTIONARY_SIZE = 16 << 10
MIN_DICTIONARY_SIZE = 256  # zstd's own lower bound (ZDICT_DICTSIZE_MIN)
MIN_SAMPLES = 10  # zstd holds a quarter back for testing and needs 5 to train on
_HEADER_SIZE = 8  # magic and id
_TRAINING_ADVICE = "train on a few hundred samples, about 100 times the dictionary size in all"


class DictionaryError(ValueError):
    """Bytes or a file that are not a usable Zstandard dictionary, or samples that cannot
    train one; the message says which and why."""


def train_dictionary(samples: list[bytes], size: int = DEFAULT_DICTIONARY_SIZE) -> bytes:
    """A Zstandard dictionary of at most `size` bytes trained on `samples` (each one record,
    as it would be sent in one bundle)."""
    if not MIN_DICTIONARY_SIZE <= size <= MAX_DICTIONARY_BYTES:
        raise DictionaryError(
            f"dictionary size {size} is not in {MIN_DICTIONARY_SIZE}..{MAX_DICTIONARY_BYTES}"
        )
    if len(samples) < MIN_SAMPLES:
        raise DictionaryError(
            f"too few samples to train a dictionary: {len(samples)} (at least "
            f"{MIN_SAMPLES}; {_TRAINING_ADVICE})"
        )
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError as exc:
        total = sum(map(len, samples))
        raise DictionaryError(
            f"cannot train a dictionary on {len(samples)} samples of {total} bytes in all "
            f"({exc}); {_TRAINING_ADVICE}"
        ) from None


def dictionary_id(data: bytes) -> int:
    """The id a Zstandard dictionary states in its header (not 0: frames made with it name it)."""
    if len(data) > MAX_DICTIONARY_BYTES:
        raise DictionaryError(
            f"{len(data)} bytes is more than a dictionary may hold ({MAX_DICTIONARY_BYTES})"
        )
    if len(data) < _HEADER_SIZE or data[:4] != DICTIONARY_MAGIC:
        raise DictionaryError(
            "not a Zstandard dictionary (it does not start with the magic number 0xEC30A437)"
        )
    found = int.from_bytes(data[4:_HEADER_SIZE], "little")
    if found == 0:
        raise DictionaryError("the dictionary's id is 0, which frames cannot name")
    return found


def parse_dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    """`data` as zstandard's dictionary, checked: header (dictionary_id) and entropy tables."""
    dictionary_id(data)
    parsed = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
    try:
        zstandard.ZstdDecompressor(dict_data=parsed)  # reads the tables (and keeps them)
    except zstandard.ZstdError:
        raise DictionaryError("the dictionary's entropy tables are broken") from None
    return parsed


def load_dictionary(path: str | os.PathLike) -> bytes:
    """A dictionary file's bytes, checked as parse_dictionary does."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DictionaryError(f"dictionary file {path} is not a regular file")
            data = handle.read(MAX_DICTIONARY_BYTES + 1)  # bounded, however the file grows
    except OSError as exc:
        raise DictionaryError(f"cannot read dictionary file {path}: {exc.strerror}") from None
    try:
        parse_dictionary(data)
    except DictionaryError as exc:
        raise DictionaryError(f"dictionary file {path}: {exc}") from None
    return data


def save_dictionary(path: str | os.PathLike, data: bytes) -> None:
    """Write a checked dictionary atomically (temporary file, fsync, rename), mode 600."""
    parse_dictionary(data)
    try:
        write_private(path, data)
    except OSError as exc:
        raise DictionaryError(f"cannot write dictionary file {path}: {exc.strerror}") from None
