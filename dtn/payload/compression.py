"""Payload compression (Zstandard) and its private extension block (sans-I/O).

The payload compression block, block type 194 (RFC 9171 9.1: 192..255 are private), says how
the payload was compressed. Its data is a CBOR array `[algorithm, original length]`:
algorithm 0 means "stored, not compressed" (written when compression would not shrink the
payload but the block is needed anyway, see pipeline.py), 1 means one Zstandard frame
(RFC 8878) holding the original bytes, with its content size in the frame header. Version 1
of the format; a new layout would take a new algorithm code.

The block is never trusted on its own: everything in it must follow from the payload, which
BPSec protects. A zstd payload starts with the Zstandard magic number and its frame header
states the original length; a stored payload never starts with the magic (data that does is
compressed even when that does not shrink it) and is exactly the original length. So a changed,
swapped or forged block can only get the bundle rejected, never different data delivered.

Decompression is bounded before it starts: the declared length must be within the configured
maximum and equal to the frame's own content size, so the output buffer is sized by a number
already checked; the window size is capped too. A decompression bomb costs a header read.
"""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple

import zstandard

from dtn.bundle import BlockFlags, BundleError, cbor

from .errors import CompressionError, PayloadReason

COMPRESSION_BLOCK_TYPE = 194
# Replicated so every fragment carries it; not "delete if unprocessable", so a relay that does
# not know the block still forwards the bundle (only the destination acts on it).
COMPRESSION_BLOCK_FLAGS = int(BlockFlags.REPLICATE_IN_FRAGMENTS)
DEFAULT_LEVEL = 3
DEFAULT_MAX_PAYLOAD = 64 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 3.1.1, little-endian 0xFD2FB528
_ARRAY_HEAD = b"\x82"  # the block data: a 2-item array
_MAX_WINDOW_LOG = 27  # zstd's own default limit for decoders (128 MiB)


class Algorithm(IntEnum):
    STORED = 0
    ZSTD = 1


_ALGORITHMS = {int(algorithm): algorithm for algorithm in Algorithm}
_STORED, _ZSTD = int(Algorithm.STORED), int(Algorithm.ZSTD)  # enum members are slow to hash


class CompressionInfo(NamedTuple):
    algorithm: Algorithm
    original_length: int

    def encode(self) -> bytes:
        return compression_block_data(self.algorithm, self.original_length)

    @classmethod
    def decode(cls, data: bytes) -> CompressionInfo:
        try:
            count, pos = cbor.read_array(data, 0, "payload compression block")
            if count != 2:
                raise BundleError(f"must be a 2-item array [algorithm, length], found {count}")
            algorithm, pos = cbor.read_uint(data, pos, "compression algorithm")
            length, pos = cbor.read_uint(data, pos, "original length")
            if pos != len(data):
                raise BundleError(f"{len(data) - pos} bytes after the array")
        except (BundleError, IndexError) as exc:
            detail = str(exc) if isinstance(exc, BundleError) else "data is truncated"
            raise CompressionError(
                PayloadReason.MALFORMED_COMPRESSION_BLOCK, f"payload compression block: {detail}"
            ) from None
        known = _ALGORITHMS.get(algorithm)
        if known is None:
            raise CompressionError(
                PayloadReason.UNSUPPORTED_COMPRESSION,
                f"payload compression algorithm {algorithm} is unknown here "
                f"(this node reads {[a.value for a in Algorithm]})",
            )
        return cls(known, length)


class Compressor:
    """Reusable Zstandard contexts (not thread-safe: one per pipeline)."""

    def __init__(self, level: int = DEFAULT_LEVEL, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        # the zstd call itself, for the pipeline's C fast path (Compressor.pack's choice in C)
        self.zstd = zstandard.ZstdCompressor(level=level, write_content_size=True).compress
        window_log = min(max(max_payload - 1, 1).bit_length(), _MAX_WINDOW_LOG)
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=1 << max(window_log, 10))

    def compress(self, data: bytes) -> bytes | None:
        """The compressed payload, or None to store `data` as it is: when compressing does not
        make it smaller, unless it starts like a Zstandard frame (see the module docstring)."""
        return self.pack(data)[0]

    def pack(self, data: bytes) -> tuple[bytes | None, bytes]:
        """(compress(data), the payload compression block's data for it)."""
        compressed = self.zstd(data)
        if len(compressed) < len(data) or data[:4] == ZSTD_MAGIC:
            return compressed, compression_block_data(_ZSTD, len(data))
        return None, compression_block_data(_STORED, len(data))

    def restore(self, payload: bytes, block_data: bytes) -> bytes:
        """The original payload, given the payload compression block's data: what
        decompress(payload, CompressionInfo.decode(block_data)) returns or raises. The block must
        say what follows from the payload; when it says that as pack() writes it and within the
        maximum, it needs no reading, and a stored payload no copy."""
        stored = payload[:4] != ZSTD_MAGIC
        length = len(payload) if stored else _content_size(payload)
        algorithm = _STORED if stored else _ZSTD
        if (
            length < 0
            or length > self.max_payload
            or block_data != compression_block_data(algorithm, length)
        ):
            return self.decompress(payload, CompressionInfo.decode(block_data))
        return payload if stored else self._inflate(payload)

    def decompress(self, data: bytes, info: CompressionInfo) -> bytes:
        """The original payload; CompressionError, in bounded memory, for anything else."""
        declared = info.original_length
        if declared > self.max_payload:
            raise CompressionError(
                PayloadReason.TOO_LARGE,
                f"the payload declares {declared} bytes uncompressed, more "
                f"than this node accepts ({self.max_payload})",
            )
        is_frame = data[:4] == ZSTD_MAGIC
        if info.algorithm == Algorithm.STORED:
            if is_frame:
                raise _failed(
                    "the compression block says 'stored', but the payload is a "
                    "Zstandard frame (stored payloads never are)"
                )
            if len(data) != declared:
                raise _failed(
                    f"the compression block says 'stored, {declared} bytes', the "
                    f"payload is {len(data)} bytes"
                )
            return data
        if not is_frame:
            raise _failed(
                "the compression block says zstd, but the payload does not start with "
                "the Zstandard magic number"
            )
        try:
            content_size = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise _failed(f"the payload's Zstandard frame header is broken: {exc}") from None
        if content_size != declared:
            raise _failed(
                f"the Zstandard frame holds {content_size} bytes (-1: unknown), its "
                f"compression block says {declared}"
            )
        return self._inflate(data)

    def _inflate(self, frame: bytes) -> bytes:
        """A frame whose content size is checked, decompressed; nothing may follow it."""
        try:
            return self._decompressor.decompress(frame, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise _failed(f"the payload does not decompress: {exc}") from None


@lru_cache(maxsize=1024)  # payload sizes recur: bundles are cut to a few fixed sizes
def compression_block_data(algorithm: int, original_length: int) -> bytes:
    """The block's data for a payload compressed (or stored) by `algorithm` from
    `original_length` bytes: CompressionInfo(...).encode(), kept."""
    return _ARRAY_HEAD + cbor.uint(algorithm) + cbor.uint(original_length)


def _content_size(frame: bytes) -> int:
    """The content size a Zstandard frame header states; -1 when it states none or is broken."""
    try:
        return zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        return -1


def _failed(message: str) -> CompressionError:
    return CompressionError(PayloadReason.DECOMPRESSION_FAILED, message)
