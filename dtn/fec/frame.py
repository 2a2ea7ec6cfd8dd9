"""The link frame, versions 1 and 2: bundle bytes <-> Reed-Solomon coded datagrams (sans-I/O).

One frame is one UDP datagram (docs/fec.md has the full format). Version 1 carries one piece
of one bundle; version 2 ("packed") carries a sequence of records, each a piece of a bundle,
so that many small bundles share a frame. The prefix and RS layout are the same in both:

    marker      4 bytes   1A CF FC 1D (the CCSDS attached sync marker), <= 4 bit errors accepted
    format      5 bytes   one byte sent five times, read by bitwise majority:
                          version << 4 | dual_basis << 3 | index of the depth in DEPTHS
    body        G codeblocks, each I interleaved RS codewords of n symbols (CCSDS order:
                symbol t of codewords 0..I-1, then symbol t + 1, ...). The data symbols
                of all codeblocks, in order, carry the content:
        header      28 bytes  bundle id u64, bundle length u64, frame index u32,
                              frame count u32, payload length u32 (big-endian)
        payload
        crc32c      4 bytes   CRC-32C of header + payload: catches a miscorrection
        zero fill   up to the codeblocks' data capacity
    version 2 content:
        header      4 bytes   records length u16 (bytes after this header), record count u16
        records     each: bundle id u64, bundle length u32, offset u32, piece length u16,
                    then the piece (bytes [offset, offset + length) of the bundle)
        crc32c      4 bytes   CRC-32C of header + records
        zero fill

The receiver learns I from the format byte and G and n from the datagram length alone:
G = ceil(body / (255 I)), n = body / (G I). Full frames use 255-symbol codewords; the last
frame of a bundle is as short as its content allows (shortened codewords, zero fill virtual).

Both directions work on many frames at once with numpy; `decode_frames` is the batched path.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import crc32c
import numpy as np

from dtn.fec import rs

MARKER = bytes.fromhex("1ACFFC1D")
MARKER_TOLERANCE = 4  # bit errors accepted in the marker
VERSION = 1  # one piece of one bundle per frame
PACKED_VERSION = 2  # records: pieces of several bundles per frame
VERSIONS = (VERSION, PACKED_VERSION)
DEPTHS = (1, 2, 3, 4, 5, 8)  # interleaving depths I; a burst of 16 I bytes is corrected
FORMAT_COPIES = 5
PREFIX_LEN = len(MARKER) + FORMAT_COPIES
HEADER = np.dtype(
    [
        ("bundle_id", ">u8"),
        ("bundle_length", ">u8"),
        ("index", ">u4"),
        ("count", ">u4"),
        ("payload_length", ">u4"),
    ]
)
CRC_LEN = 4
OVERHEAD = HEADER.itemsize + CRC_LEN  # content bytes per frame that are not payload
PACKED_HEADER = struct.Struct(">HH")  # records length, record count
RECORD = struct.Struct(">QIIH")  # bundle id, bundle length, offset, piece length
PACKED_OVERHEAD = PACKED_HEADER.size + CRC_LEN
MAX_PACKED_BUNDLE = 2**32 - 1
MAX_DATAGRAM = 65_507  # largest UDP payload over IPv4

_MARKER_ARRAY = np.frombuffer(MARKER, dtype=np.uint8)
_ALIGN_PAD = bytes(-PREFIX_LEN % 8)
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
# Codewords per kernel call: big enough to amortise numpy's per-call cost, small enough
# for the working arrays to stay in cache.
_CODEWORDS_PER_CHUNK = 16384
_TRANSPOSE_FRAMES = 32
# Damaged share of a sample of codewords above which re-encoding every word beats checking
# first (a check costs about 2/3 of a re-encoding).
_DAMAGE_SAMPLE = 256
_MOSTLY_DAMAGED = 0.25


class FrameError(ValueError):
    """A datagram that is not a good frame. `reason` names the check that failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class FrameFormat(NamedTuple):
    """What the format byte says: the interleaving depth, the symbol basis, the version."""

    depth: int
    dual_basis: bool
    version: int = VERSION

    @property
    def byte(self) -> int:
        return self.version << 4 | int(self.dual_basis) << 3 | DEPTHS.index(self.depth)

    @classmethod
    def from_byte(cls, byte: int) -> FrameFormat:
        return cls(DEPTHS[byte & 7], bool(byte & 8), byte >> 4)


@dataclass(frozen=True)
class FrameConfig:
    """How a sender frames: the largest datagram, the interleaving depth, the basis."""

    frame_size: int = 8192
    depth: int = 4
    dual_basis: bool = False

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ValueError(f"interleaving depth must be one of {DEPTHS}, got {self.depth}")
        if not 0 < self.frame_size <= MAX_DATAGRAM:
            raise ValueError(f"frame_size must be 1..{MAX_DATAGRAM}, got {self.frame_size}")
        if self.full_layout().content_len <= OVERHEAD:
            raise ValueError(f"frame_size {self.frame_size} leaves no room for payload")

    def full_layout(self) -> Layout:
        """The layout of a full frame: as many 255-symbol codeblocks as fit, else one short."""
        body = self.frame_size - PREFIX_LEN
        groups = body // (self.depth * rs.N)
        if groups:
            return Layout(self.depth, groups, rs.N)
        return Layout(self.depth, 1, max(body // self.depth, rs.PARITY))

    @property
    def format(self) -> FrameFormat:
        return FrameFormat(self.depth, self.dual_basis)

    @property
    def packed_format(self) -> FrameFormat:
        return FrameFormat(self.depth, self.dual_basis, PACKED_VERSION)

    @property
    def payload_per_frame(self) -> int:
        return self.full_layout().content_len - OVERHEAD


@dataclass(frozen=True)
class Layout:
    """The shape of a frame body: `groups` codeblocks of `depth` codewords of `length`."""

    depth: int
    groups: int
    length: int

    @property
    def data_len(self) -> int:
        return self.length - rs.PARITY

    @property
    def content_len(self) -> int:
        return self.groups * self.depth * self.data_len

    @property
    def body_len(self) -> int:
        return self.groups * self.depth * self.length

    @classmethod
    def for_content(cls, content_len: int, depth: int) -> Layout:
        """The smallest layout that holds `content_len` bytes (codewords as even as can be)."""
        groups = math.ceil(content_len / (depth * rs.K))
        return cls(depth, groups, rs.PARITY + math.ceil(content_len / (depth * groups)))

    @classmethod
    def for_body(cls, body_len: int, depth: int) -> Layout:
        """The layout a receiver reads from a body length; raises FrameError if none fits."""
        groups = math.ceil(body_len / (depth * rs.N))
        if groups == 0 or body_len % (groups * depth):
            raise FrameError("bad_length", f"{body_len}-byte body does not split at depth {depth}")
        layout = cls(depth, groups, body_len // (groups * depth))
        if layout.content_len < OVERHEAD:
            raise FrameError("bad_length", f"{body_len}-byte body is too short for a header")
        return layout


def _symbol_dtype(depth: int) -> np.dtype:
    """A dtype as wide as one interleaved row of a codeblock (symbol t of every codeword)."""
    return np.dtype({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(depth, f"V{depth}"))


def _codeword_major(blocks: np.ndarray, layout: Layout, symbols: int) -> np.ndarray:
    """The first `symbols` symbols of every codeword of (F, G*x*I) codeblocks (bodies, or
    contents) as a contiguous (symbols, F*G*I) array, one row per symbol index, so that the
    kernel reads every row contiguously.

    Moving whole interleaved rows (I bytes at a time, as one wide item), a few frames at a
    time so that the source stays in cache, makes this transpose cheap.
    """
    frames = blocks.shape[0]
    wide_type = _symbol_dtype(layout.depth)
    wide = blocks.view(wide_type).reshape(frames, layout.groups, -1)[:, :, :symbols]
    rows = np.empty((symbols, frames, layout.groups), dtype=wide_type)
    for first in range(0, frames, _TRANSPOSE_FRAMES):
        last = first + _TRANSPOSE_FRAMES
        np.copyto(rows[:, first:last], wide[first:last].transpose(2, 0, 1))
    return rows.view(np.uint8).reshape(symbols, -1)


def _frames_per_chunk(layout: Layout) -> int:
    return max(1, _CODEWORDS_PER_CHUNK // (layout.groups * layout.depth))


# -- encoding --------------------------------------------------------------------------------


def encode_frames(config: FrameConfig, bundle_id: int, data: bytes) -> list[bytes]:
    """Cut one bundle into coded frames, each at most `config.frame_size` bytes."""
    if not 0 <= bundle_id < 2**64:
        raise ValueError(f"bundle_id must fit in 64 bits, got {bundle_id}")
    payload = np.frombuffer(data, dtype=np.uint8)
    per_frame = config.payload_per_frame
    count = max(1, math.ceil(payload.size / per_frame))
    full = payload.size // per_frame if payload.size % per_frame else count - 1
    frames: list[bytes] = []
    if full:
        layout = config.full_layout()
        chunks = payload[: full * per_frame].reshape(full, per_frame)
        step = _frames_per_chunk(layout)
        for first in range(0, full, step):
            frames += _encode_batch(
                config, layout, bundle_id, payload.size, first, count, chunks[first : first + step]
            )
    if full < count:
        tail = payload[full * per_frame :]
        layout = Layout.for_content(tail.size + OVERHEAD, config.depth)
        frames += _encode_batch(config, layout, bundle_id, payload.size, full, count, tail[None, :])
    return frames


def _encode_batch(
    config: FrameConfig,
    layout: Layout,
    bundle_id: int,
    bundle_length: int,
    first_index: int,
    count: int,
    chunks: np.ndarray,
) -> list[bytes]:
    """Frames for equal-length payload chunks (F, p) that share one layout."""
    frames, payload_len = chunks.shape
    content = np.zeros((frames, layout.content_len), dtype=np.uint8)
    header = np.zeros(frames, dtype=HEADER)
    header["bundle_id"] = bundle_id
    header["bundle_length"] = bundle_length
    header["index"] = np.arange(first_index, first_index + frames)
    header["count"] = count
    header["payload_length"] = payload_len
    crc_at = HEADER.itemsize + payload_len
    content[:, : HEADER.itemsize] = header.view(np.uint8).reshape(frames, HEADER.itemsize)
    content[:, HEADER.itemsize : crc_at] = chunks
    crcs = np.array([crc32c.crc32c(row[:crc_at]) for row in content], dtype=">u4")
    content[:, crc_at : crc_at + CRC_LEN] = crcs.view(np.uint8).reshape(frames, CRC_LEN)
    return code_contents(config.format, layout, content)


def code_contents(frame_format: FrameFormat, layout: Layout, content: np.ndarray) -> list[bytes]:
    """Datagrams of (F, layout.content_len) frame contents: prefix, RS parity, interleaving.
    This is the part every version shares; a version only says what the content holds."""
    frames = content.shape[0]
    codec = rs.codec(frame_format.dual_basis)
    parity = codec.parity(_codeword_major(content, layout, layout.data_len).T)
    out = np.empty((frames, PREFIX_LEN + layout.body_len), dtype=np.uint8)
    out[:, : len(MARKER)] = _MARKER_ARRAY
    out[:, len(MARKER) : PREFIX_LEN] = frame_format.byte
    body = out[:, PREFIX_LEN:].reshape(frames, layout.groups, layout.length, layout.depth)
    body[:, :, : layout.data_len] = content.reshape(
        frames, layout.groups, layout.data_len, layout.depth
    )
    body[:, :, layout.data_len :] = parity.reshape(
        frames, layout.groups, layout.depth, rs.PARITY
    ).transpose(0, 1, 3, 2)
    return [row.tobytes() for row in out]


# -- decoding --------------------------------------------------------------------------------


class DecodedFrame(NamedTuple):
    """A version 1 frame whose content passed the RS decoder and the CRC."""

    bundle_id: int
    bundle_length: int
    index: int
    count: int
    payload: bytes
    corrected_symbols: int
    format: FrameFormat


class Piece(NamedTuple):
    """Bytes [offset, offset + len(data)) of a bundle, as a version 2 record carries them."""

    bundle_id: int
    bundle_length: int
    offset: int
    data: bytes


class PackedFrame(NamedTuple):
    """A version 2 frame whose content passed the RS decoder, the CRC and the record checks."""

    pieces: list[Piece]
    corrected_symbols: int
    format: FrameFormat


def decode_frame(
    datagram: bytes, fallback: FrameFormat | None = None
) -> DecodedFrame | PackedFrame:
    """Decode one datagram; raises FrameError naming why it is not a good frame."""
    (result,) = decode_frames([datagram], fallback)
    if isinstance(result, FrameError):
        raise result
    return result


def decode_frames(
    datagrams: Sequence[bytes], fallback: FrameFormat | None = None
) -> list[DecodedFrame | PackedFrame | FrameError]:
    """Decode many datagrams at once: one result per datagram, in order.

    Datagrams of the same length and format share every numpy call, so a batch of a link's
    traffic costs little more per frame than the arithmetic itself.

    The prefix is not RS-coded, so a burst can wipe it. A frame whose prefix cannot be read
    is then tried with `fallback` (a receiver passes the format of its last good frame) or
    else with the format most frames of its length in the batch have; the RS decoder and
    the CRC decide whether that was right.
    """
    results: list[DecodedFrame | FrameError | None] = [None] * len(datagrams)
    by_length: dict[int, list[int]] = {}
    for position, datagram in enumerate(datagrams):
        by_length.setdefault(len(datagram), []).append(position)
    for length, positions in by_length.items():
        if length < PREFIX_LEN:
            error = FrameError("truncated", f"{length} bytes is shorter than a frame")
            decoded: list = [error] * len(positions)
        else:
            # Each datagram goes after a few pad bytes so that every body starts 8-byte
            # aligned, which keeps the wide-item transpose in _codeword_major fast.
            joined = _ALIGN_PAD.join([b"", *(datagrams[p] for p in positions)])
            rows = np.frombuffer(joined, dtype=np.uint8).reshape(len(positions), -1)
            decoded = _decode_same_length(rows[:, len(_ALIGN_PAD) :], fallback)
        for position, result in zip(positions, decoded, strict=True):
            results[position] = result
    return results  # type: ignore[return-value]


def _decode_same_length(frames: np.ndarray, fallback: FrameFormat | None) -> list:
    """Decode (F, L) datagrams of one length: read the prefixes, then RS by format."""
    body_len = frames.shape[1] - PREFIX_LEN
    results: list[DecodedFrame | FrameError | None] = [None] * frames.shape[0]
    marker_errors = _POPCOUNT[frames[:, : len(MARKER)] ^ _MARKER_ARRAY].sum(axis=1)
    votes = np.unpackbits(frames[:, len(MARKER) : PREFIX_LEN], axis=1)
    votes = votes.reshape(-1, FORMAT_COPIES, 8).sum(axis=1)
    format_bytes = np.packbits(votes > FORMAT_COPIES // 2, axis=1)[:, 0]
    layouts: dict[int, Layout | FrameError] = {}
    by_format: dict[int, list[int]] = {}
    unreadable = []
    for row, (errors, byte) in enumerate(
        zip(marker_errors.tolist(), format_bytes.tolist(), strict=True)
    ):
        if byte not in layouts:
            layouts[byte] = _layout_of(byte, body_len)
        if errors > MARKER_TOLERANCE:
            results[row] = FrameError("bad_marker", f"{errors} marker bits wrong")
        elif isinstance(layouts[byte], FrameError):
            results[row] = layouts[byte]
        else:
            by_format.setdefault(byte, []).append(row)
            continue
        unreadable.append(row)  # keeps its prefix error unless the fallback decodes it
    if unreadable:
        guess = (
            fallback.byte
            if fallback
            else max(by_format, key=lambda b: len(by_format[b]), default=None)
        )
        if guess is not None:
            layouts.setdefault(guess, _layout_of(guess, body_len))
            if not isinstance(layouts[guess], FrameError):
                by_format.setdefault(guess, []).extend(unreadable)
    for byte, rows in by_format.items():
        layout, frame_format = layouts[byte], FrameFormat.from_byte(byte)
        codec = rs.codec(frame_format.dual_basis)
        selected = frames[rows] if len(rows) < frames.shape[0] else frames
        step = _frames_per_chunk(layout)
        for first in range(0, len(rows), step):
            chunk = selected[first : first + step, PREFIX_LEN:]
            decoded = _decode_layout(chunk, layout, codec, frame_format)
            for row, result in zip(rows[first : first + step], decoded, strict=True):
                if results[row] is None or not isinstance(result, FrameError):
                    results[row] = result
    return results


def _layout_of(format_byte: int, body_len: int) -> Layout | FrameError:
    if format_byte >> 4 not in VERSIONS or format_byte & 7 >= len(DEPTHS):
        return FrameError("bad_format", f"unknown format byte {format_byte:#04x}")
    try:
        return Layout.for_body(body_len, DEPTHS[format_byte & 7])
    except FrameError as error:
        return error


def _decode_layout(
    bodies: np.ndarray, layout: Layout, codec: rs.ReedSolomon, frame_format: FrameFormat
) -> list:
    """RS-check, correct and parse (F, body) frames that share one layout."""
    frames = bodies.shape[0]
    shape = (frames, layout.groups, layout.depth)
    words = _codeword_major(bodies, layout, layout.length)  # (n, F*G*I)
    blocks = bodies.reshape(frames, layout.groups, layout.length, layout.depth)
    content = blocks[:, :, : layout.data_len].reshape(frames, layout.content_len)

    corrected = np.zeros(frames, dtype=np.intp)
    failed = np.zeros(frames, dtype=bool)
    damaged, remainders = _damaged_remainders(codec, words, layout.data_len)
    if damaged.size:
        if not content.flags.writeable:  # a view into the received datagrams
            content = content.copy()
        fixes = codec.correct(remainders, layout.length)
        codeword = damaged[fixes.codeword]
        frame, group, slot = np.unravel_index(codeword, shape)
        failed[np.unravel_index(damaged[fixes.failed], shape)[0]] = True
        corrected = np.bincount(frame, minlength=frames)
        in_data = fixes.position < layout.data_len
        offset = (group * layout.data_len + fixes.position) * layout.depth + slot
        content[frame[in_data], offset[in_data]] ^= fixes.error[in_data]
    if frame_format.version == PACKED_VERSION:
        return _parse_packed(content, failed, corrected, frame_format)
    return _parse_contents(content, failed, corrected, frame_format)


def _damaged_remainders(
    codec: rs.ReedSolomon, words: np.ndarray, data_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which of the (n, W) codeword-major words are damaged, and their remainders.

    On a good link a cheap 8-syndrome check finds the few damaged words and only those are
    re-encoded. When a sample shows that many are damaged, re-encoding them all at once is
    cheaper than checking first.
    """
    sample = words[:, :_DAMAGE_SAMPLE].T
    if codec.damaged(sample).mean() > _MOSTLY_DAMAGED:
        remainders = codec.remainders(words[:data_len].T, words[data_len:].T)
        damaged = np.flatnonzero(remainders.view(np.uint64).any(axis=1))
        return damaged, remainders[damaged]
    damaged = np.flatnonzero(codec.damaged(words.T))
    picked = words[:, damaged]
    return damaged, codec.remainders(picked[:data_len].T, picked[data_len:].T)


def _parse_contents(
    content: np.ndarray, failed: np.ndarray, corrected: np.ndarray, frame_format: FrameFormat
) -> list:
    """Header checks and CRC of corrected contents (F, C): a DecodedFrame or FrameError each."""
    frames, width = content.shape
    header = content[:, : HEADER.itemsize].view(HEADER)[:, 0]
    payload_len = header["payload_length"].astype(np.intp)
    room = width - OVERHEAD
    crc_at = HEADER.itemsize + np.minimum(payload_len, room)
    stored = np.take_along_axis(content, crc_at[:, None] + np.arange(CRC_LEN), axis=1)
    stored_crc = stored.view(">u4")[:, 0].tolist()
    flat = memoryview(content.reshape(-1))  # slicing a memoryview is far cheaper than numpy
    results: list[DecodedFrame | FrameError] = []
    fields = zip(
        header["bundle_id"].tolist(),
        header["bundle_length"].tolist(),
        header["index"].tolist(),
        header["count"].tolist(),
        payload_len.tolist(),
        crc_at.tolist(),
        stored_crc,
        failed.tolist(),
        corrected.tolist(),
        strict=True,
    )
    start = 0
    for bundle_id, bundle_length, index, count, length, end, crc, bad, fixed in fields:
        if bad:
            results.append(FrameError("uncorrectable", "more symbol errors than RS can fix"))
        elif length > room:
            results.append(FrameError("bad_header", f"payload length {length} > room {room}"))
        elif crc32c.crc32c(flat[start : start + end]) != crc:
            results.append(FrameError("bad_crc", "content CRC-32C mismatch"))
        elif not index < count <= max(1, bundle_length) or length > bundle_length:
            results.append(
                FrameError("bad_header", f"frame {index} of {count}, {length} of {bundle_length}")
            )
        else:
            payload = bytes(flat[start + HEADER.itemsize : start + end])
            results.append(
                DecodedFrame(bundle_id, bundle_length, index, count, payload, fixed, frame_format)
            )
        start += width
    return results


def _parse_packed(
    content: np.ndarray, failed: np.ndarray, corrected: np.ndarray, frame_format: FrameFormat
) -> list:
    """Version 2 contents (F, C): the CRC, then every record bounded by the frame and bundle."""
    frames, width = content.shape
    flat = memoryview(content.reshape(-1))
    results: list[PackedFrame | FrameError] = []
    header, record, crc_of = PACKED_HEADER.unpack_from, RECORD.unpack_from, crc32c.crc32c
    record_size, room = RECORD.size, width - PACKED_OVERHEAD
    for frame, (bad, fixed) in enumerate(zip(failed.tolist(), corrected.tolist(), strict=True)):
        start = frame * width
        if bad:
            results.append(FrameError("uncorrectable", "more symbol errors than RS can fix"))
            continue
        used, count = header(flat, start)
        end = start + PACKED_HEADER.size + used
        if used > room:
            results.append(FrameError("bad_header", f"records length {used} > room {room}"))
            continue
        if crc_of(flat[start:end]) != int.from_bytes(flat[end : end + CRC_LEN]):
            results.append(FrameError("bad_crc", "content CRC-32C mismatch"))
            continue
        pieces, at, error = [], start + PACKED_HEADER.size, None
        for _ in range(count):
            if at + record_size > end:
                error = "record header past the records"
                break
            bundle_id, bundle_length, offset, length = record(flat, at)
            at += record_size
            if not 0 < length <= end - at or offset + length > bundle_length:
                error = f"piece [{offset}, +{length}) of {bundle_length}, {end - at} left"
                break
            pieces.append(Piece(bundle_id, bundle_length, offset, bytes(flat[at : at + length])))
            at += length
        if error is None and at != end:
            error = f"{end - at} bytes after {count} records"
        if error is not None:
            results.append(FrameError("bad_header", error))
        else:
            results.append(PackedFrame(pieces, fixed, frame_format))
    return results
