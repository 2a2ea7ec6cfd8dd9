"""Payload compression (Zstandard) and its private extension block (sans-I/O).

The payload compression block, block type 222 by default (RFC 9171 9.1: 192..255 are private;
dtn.codepoints), says how the payload was compressed. Its data is a CBOR array:

    [0, original length]                  stored, not compressed (written when compression
                                          would not shrink the payload but the block is needed
                                          anyway, see pipeline.py)
    [1, original length]                  one Zstandard frame (RFC 8878) holding the original
                                          bytes, with its content size in the frame header
    [2, original length, dictionary id]   the same, compressed with a trained dictionary
                                          (dictionaries.py); the id (uint32, not 0) is zstd's
                                          own, also in the frame header

Version 1 of the format; a new layout would take a new algorithm code.

The block is never trusted on its own: everything in it must follow from the payload, which
BPSec protects. A zstd payload starts with the Zstandard magic number and its frame header
states the original length, and with a dictionary the dictionary's id; a stored payload never
starts with the magic (data that does is compressed even when that does not shrink it) and is
exactly the original length. So a changed, swapped or forged block can only get the bundle
rejected, never different data delivered. A dictionary this node does not have is "unsupported
compression", like an unknown algorithm.

Decompression is bounded before it starts: the declared length must be within the configured
maximum and equal to the frame's own content size, so the output buffer is sized by a number
already checked; the window size is capped too. A decompression bomb costs a header read.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from functools import lru_cache
from typing import Any, NamedTuple

import zstandard

from dtn.bundle import BlockFlags, BundleError, cbor
from dtn.codepoints import DEFAULT_CODEPOINTS

from .dictionaries import DictionaryError, parse_dictionary
from .errors import CompressionError, PayloadReason

COMPRESSION_BLOCK_TYPE = DEFAULT_CODEPOINTS.compression_block  # the default; nodes may choose
# Replicated so every fragment carries it; not "delete if unprocessable", so a relay that does
# not know the block still forwards the bundle (only the destination acts on it).
COMPRESSION_BLOCK_FLAGS = int(BlockFlags.REPLICATE_IN_FRAGMENTS)
DEFAULT_LEVEL = 3
DEFAULT_MAX_PAYLOAD = 64 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 3.1.1, little-endian 0xFD2FB528
_ARRAY_HEAD = b"\x82"  # the block data: a 2-item array
_DICTIONARY_ARRAY_HEAD = b"\x83"  # [2, length, dictionary id]
_MAX_DICTIONARY_ID = 0xFFFF_FFFF
_MAX_WINDOW_LOG = 27  # zstd's own default limit for decoders (128 MiB)


class Algorithm(IntEnum):
    STORED = 0
    ZSTD = 1
    ZSTD_DICTIONARY = 2


_ALGORITHMS = {int(algorithm): algorithm for algorithm in Algorithm}
# enum members are slow to hash
_STORED, _ZSTD, _ZSTD_DICTIONARY = (int(algorithm) for algorithm in Algorithm)


class CompressionInfo(NamedTuple):
    algorithm: Algorithm
    original_length: int
    dictionary_id: int | None = None  # for ZSTD_DICTIONARY, and only for it

    def encode(self) -> bytes:
        return compression_block_data(self.algorithm, self.original_length, self.dictionary_id)

    @classmethod
    def decode(cls, data: bytes) -> CompressionInfo:
        dictionary_id = None
        try:
            count, pos = cbor.read_array(data, 0, "payload compression block")
            if count not in (2, 3):
                raise BundleError(
                    "must be an array [algorithm, length] or [2, length, dictionary id], "
                    f"found {count} items"
                )
            algorithm, pos = cbor.read_uint(data, pos, "compression algorithm")
            length, pos = cbor.read_uint(data, pos, "original length")
            if count == 3:
                dictionary_id, pos = cbor.read_uint(data, pos, "dictionary id")
            if pos != len(data):
                raise BundleError(f"{len(data) - pos} bytes after the array")
        except (BundleError, IndexError) as exc:
            detail = str(exc) if isinstance(exc, BundleError) else "data is truncated"
            raise _malformed(detail) from None
        known = _ALGORITHMS.get(algorithm)
        if known is None:
            raise CompressionError(
                PayloadReason.UNSUPPORTED_COMPRESSION,
                f"payload compression algorithm {algorithm} is unknown here "
                f"(this node reads {[a.value for a in Algorithm]})",
            )
        if (count == 3) != (known == Algorithm.ZSTD_DICTIONARY):
            raise _malformed(f"algorithm {algorithm} takes {5 - count} items, found {count}")
        if dictionary_id is not None and not 0 < dictionary_id <= _MAX_DICTIONARY_ID:
            raise _malformed(f"dictionary id {dictionary_id} is not in 1..{_MAX_DICTIONARY_ID}")
        return cls(known, length, dictionary_id)


def is_compression_block_data(data: bytes) -> bool:
    """Whether a block's data has the compression block's shape (an algorithm this node may
    not know included): a block of another stack under the same private number has not."""
    try:
        CompressionInfo.decode(data)
    except CompressionError as exc:
        return exc.reason != PayloadReason.MALFORMED_COMPRESSION_BLOCK
    return True


class Compressor:
    """Reusable Zstandard contexts (not thread-safe: one per pipeline).

    With a `dictionary`, every payload it compresses is compressed with that dictionary
    (algorithm 2). It decompresses with `dictionary` and any of `dictionaries`, found by their
    id. DictionaryError now for bytes that are not a usable Zstandard dictionary."""

    def __init__(
        self,
        level: int = DEFAULT_LEVEL,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        dictionary: bytes | None = None,
        dictionaries: Iterable[bytes] = (),
    ) -> None:
        self.max_payload = max_payload
        window_log = min(max(max_payload - 1, 1).bit_length(), _MAX_WINDOW_LOG)
        max_window_size = 1 << max(window_log, 10)
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=max_window_size)
        compressing = None if dictionary is None else parse_dictionary(dictionary)
        trained: dict[int, zstandard.ZstdCompressionDict] = {}
        for parsed in (*map(parse_dictionary, dictionaries), *filter(None, [compressing])):
            known = trained.setdefault(parsed.dict_id(), parsed)
            if known.as_bytes() != parsed.as_bytes():
                raise DictionaryError(f"two different dictionaries have the id {known.dict_id()}")
        # One decompression context per dictionary, each holding its dictionary's tables.
        self._by_dictionary = {
            dictionary_id: zstandard.ZstdDecompressor(
                dict_data=parsed, max_window_size=max_window_size
            )
            for dictionary_id, parsed in trained.items()
        }
        self.dictionary_id = None if compressing is None else compressing.dict_id()
        self._compressed_as = _ZSTD if compressing is None else _ZSTD_DICTIONARY
        self._zstd = zstandard.ZstdCompressor(
            level=level,
            dict_data=compressing,
            write_content_size=True,
            write_dict_id=True,
        )
        # the zstd call itself, for the pipeline's C fast path (Compressor.pack's choice in C)
        self.zstd = self._zstd.compress

    def compress(self, data: bytes) -> bytes | None:
        """The compressed payload, or None to store `data` as it is: when compressing does not
        make it smaller, unless it starts like a Zstandard frame (see the module docstring)."""
        return self.pack(data)[0]

    def pack(self, data: bytes) -> tuple[bytes | None, bytes]:
        """(compress(data), the payload compression block's data for it)."""
        compressed = self.zstd(data)
        if len(compressed) < len(data) or data[:4] == ZSTD_MAGIC:
            return compressed, self.block_data(True, len(data))
        return None, self.block_data(False, len(data))

    def block_data(self, compressed: bool, length: int) -> bytes:
        """The compression block's data for a payload of `length` bytes that this compressor
        compressed (with self.zstd) or stored: [1, length], [2, length, dictionary id] or
        [0, length]."""
        if compressed:
            return compression_block_data(self._compressed_as, length, self.dictionary_id)
        return compression_block_data(_STORED, length)

    def stream(self, size: int) -> tuple[Any, bytes]:
        """For a payload of `size` bytes too large to hold: (a zstd compression object to
        feed it to piece by piece with compress() and end with flush(), the compression
        block's data). The frame states `size` as its content size, as pack() writes it."""
        return self._zstd.compressobj(size=size), self.block_data(True, size)

    def stream_restorer(self, block_data: bytes, limit: int) -> StreamRestorer:
        """restore() for a payload read piece by piece, allowed up to `limit` bytes restored."""
        info = CompressionInfo.decode(block_data)
        if info.original_length > limit:
            raise CompressionError(
                PayloadReason.TOO_LARGE,
                f"the payload declares {info.original_length} bytes uncompressed, more "
                f"than this node accepts ({limit})",
            )
        if info.algorithm == Algorithm.STORED:
            return StreamRestorer(info.original_length, None)
        return StreamRestorer(info.original_length, self._decompressor_for(info).decompressobj())

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
            return self._restore_other(payload, block_data, length)
        return payload if stored else self._inflate(payload, self._decompressor)

    def _restore_other(self, payload: bytes, block_data: bytes, length: int) -> bytes:
        """restore() for any block but [0 or 1, the length the payload implies]: a frame made
        with a dictionary this node has, whose block is [2, content size, the frame's dictionary
        id] within the maximum, is decompressed at once; anything else takes decompress()."""
        if (
            block_data[:1] == _DICTIONARY_ARRAY_HEAD
            and payload[:4] == ZSTD_MAGIC
            and 0 <= length <= self.max_payload
        ):
            framed = _frame_dictionary(payload)
            decompressor = self._by_dictionary.get(framed)
            if decompressor is not None and block_data == compression_block_data(
                _ZSTD_DICTIONARY, length, framed
            ):
                return self._inflate(payload, decompressor)
        return self.decompress(payload, CompressionInfo.decode(block_data))

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
        decompressor = self._decompressor_for(info)
        if not is_frame:
            raise _failed(
                "the compression block says zstd, but the payload does not start with "
                "the Zstandard magic number"
            )
        try:
            content_size = zstandard.frame_content_size(data)
            # 0: names none. Algorithm 1 needs no check: zstd refuses a frame naming one.
            frame_dictionary = zstandard.get_frame_parameters(data).dict_id
        except zstandard.ZstdError as exc:
            raise _failed(f"the payload's Zstandard frame header is broken: {exc}") from None
        if content_size != declared:
            raise _failed(
                f"the Zstandard frame holds {content_size} bytes (-1: unknown), its "
                f"compression block says {declared}"
            )
        if info.algorithm == Algorithm.ZSTD_DICTIONARY and frame_dictionary != info.dictionary_id:
            raise _failed(
                f"the Zstandard frame names dictionary {frame_dictionary} (0: none), its "
                f"compression block says {info.dictionary_id}"
            )
        return self._inflate(data, decompressor)

    def _decompressor_for(self, info: CompressionInfo) -> zstandard.ZstdDecompressor:
        if info.algorithm != Algorithm.ZSTD_DICTIONARY:
            return self._decompressor
        decompressor = self._by_dictionary.get(info.dictionary_id)
        if decompressor is None:
            raise CompressionError(
                PayloadReason.UNSUPPORTED_COMPRESSION,
                f"payload needs zstd dictionary {info.dictionary_id}, which this node does not "
                "have; load it with dtn.payload.dictionaries.load_dictionary into the "
                "pipeline's dictionaries (`dtn dict info FILE` shows a file's id)",
            )
        return decompressor

    def _inflate(self, frame: bytes, decompressor: zstandard.ZstdDecompressor) -> bytes:
        """A frame whose content size is checked, decompressed; nothing may follow it."""
        try:
            return decompressor.decompress(frame, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise _failed(f"the payload does not decompress: {exc}") from None


class StreamRestorer:
    """A payload restored piece by piece: feed() each piece of the payload as received, then
    finish(). CompressionError as soon as the output would pass the declared length, and at the
    end if it falls short or the frame is incomplete. Output is bounded by the declared length,
    itself checked against the node's limit."""

    def __init__(self, declared: int, decompressor: Any, *, check_magic: bool = True) -> None:
        """`decompressor` None: the payload is stored. `check_magic`: a compression block
        said so, and a stored payload never starts like a Zstandard frame (nor a zstd one
        otherwise)."""
        self.declared = declared
        self._decompressor = decompressor
        self._restored = 0
        self._first = check_magic

    def feed(self, piece: bytes) -> bytes:
        if self._first and piece:
            self._first = False
            if (self._decompressor is None) == (piece[:4] == ZSTD_MAGIC):
                raise _failed(
                    "the compression block says 'stored' but the payload is a Zstandard frame"
                    if self._decompressor is None
                    else "the compression block says zstd, but the payload does not start "
                    "with the Zstandard magic number"
                )
        if self._decompressor is None:
            out = piece
        else:
            try:
                out = self._decompressor.decompress(piece)
            except zstandard.ZstdError as exc:
                raise _failed(f"the payload does not decompress: {exc}") from None
        self._restored += len(out)
        if self._restored > self.declared:
            raise _failed(f"the payload restores to more than the {self.declared} bytes declared")
        return out

    def finish(self) -> None:
        decompressor = self._decompressor
        if decompressor is not None and (not decompressor.eof or decompressor.unused_data):
            raise _failed("the payload is not exactly one complete Zstandard frame")
        if self._restored != self.declared:
            raise _failed(
                f"the payload restores to {self._restored} bytes, its compression block "
                f"says {self.declared}"
            )


@lru_cache(maxsize=1024)  # payload sizes recur: bundles are cut to a few fixed sizes
def compression_block_data(
    algorithm: int, original_length: int, dictionary_id: int | None = None
) -> bytes:
    """The block's data for a payload compressed (or stored) by `algorithm` from
    `original_length` bytes, with the dictionary `dictionary_id` for algorithm 2:
    CompressionInfo(...).encode(), kept."""
    fields = cbor.uint(algorithm) + cbor.uint(original_length)
    if dictionary_id is None:
        return _ARRAY_HEAD + fields
    return _DICTIONARY_ARRAY_HEAD + fields + cbor.uint(dictionary_id)


def _content_size(frame: bytes) -> int:
    """The content size a Zstandard frame header states; -1 when it states none or is broken."""
    try:
        return zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        return -1


def _frame_dictionary(frame: bytes) -> int:
    """The dictionary id a Zstandard frame header names; 0 when it names none or is broken."""
    try:
        return zstandard.get_frame_parameters(frame).dict_id
    except zstandard.ZstdError:
        return 0


def _malformed(detail: str) -> CompressionError:
    return CompressionError(
        PayloadReason.MALFORMED_COMPRESSION_BLOCK, f"payload compression block: {detail}"
    )


def _failed(message: str) -> CompressionError:
    return CompressionError(PayloadReason.DECOMPRESSION_FAILED, message)
