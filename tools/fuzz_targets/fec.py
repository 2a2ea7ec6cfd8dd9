"""The FEC link frame decoder (dtn.fec.frame: marker, format byte, RS, version 1 header,
version 2 records) and the reassembler behind it (dtn.fec.link.FrameDecoder).

The first input byte picks the mode. Datagram mode (high bit clear) feeds the rest as one
received datagram. Content mode (high bit set) treats the rest as frame content: it is
split into 1-4 frames, given a correct CRC-32C and RS-coded in the format the mode byte names,
so that mutations reach the header and record checks behind the RS decoder and the CRC."""

from __future__ import annotations

import contextlib
import struct

import crc32c
import numpy as np

from dtn.fec.frame import (
    CRC_LEN,
    DEPTHS,
    HEADER,
    OVERHEAD,
    PACKED_HEADER,
    PACKED_OVERHEAD,
    PACKED_VERSION,
    RECORD,
    FrameConfig,
    FrameError,
    FrameFormat,
    Layout,
    code_contents,
    decode_frame,
    encode_frames,
)
from dtn.fec.link import FrameDecoder
from dtn.fec.pack import FramePacker

from . import _seeds

_CONTENT_MODE = 0x80
_MAX_BUNDLE = 1 << 20


def _format(mode: int) -> FrameFormat:
    version = PACKED_VERSION if mode & 0x08 else 1
    return FrameFormat(DEPTHS[mode % len(DEPTHS)], bool(mode & 0x10), version)


def _with_crc(content: bytearray, version: int) -> None:
    """Put the CRC-32C where the decoder reads it, as a sender would have."""
    if version == PACKED_VERSION:
        (used, _count) = PACKED_HEADER.unpack_from(content)
        end = PACKED_HEADER.size + min(used, len(content) - PACKED_OVERHEAD)
    else:
        (payload_length,) = struct.unpack_from(">I", content, HEADER.itemsize - 4)
        end = HEADER.itemsize + min(payload_length, len(content) - OVERHEAD)
    content[end : end + CRC_LEN] = crc32c.crc32c(content[:end]).to_bytes(CRC_LEN, "big")


def _coded(mode: int, content: bytes) -> list[bytes]:
    frame_format = _format(mode)
    frames = 1 + (mode >> 5 & 3)
    size = -(-len(content) // frames)
    datagrams = []
    for first in range(0, max(len(content), 1), max(size, 1)):
        piece = content[first : first + size]
        layout = Layout.for_content(max(len(piece), OVERHEAD), frame_format.depth)
        padded = bytearray(piece.ljust(layout.content_len, b"\0"))
        _with_crc(padded, frame_format.version)
        rows = np.frombuffer(bytes(padded), dtype=np.uint8).reshape(1, -1)
        datagrams += code_contents(frame_format, layout, rows)
    return datagrams


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    datagrams = _coded(mode, rest) if mode & _CONTENT_MODE else [rest]
    for datagram in datagrams:
        with contextlib.suppress(FrameError):
            decode_frame(datagram)
    receiver = FrameDecoder(max_bundle_bytes=_MAX_BUNDLE, max_pending_bytes=4 * _MAX_BUNDLE)
    for bundle in receiver.receive_many(datagrams, now=0.0):
        if len(bundle) > _MAX_BUNDLE:
            raise AssertionError(f"the reassembler completed a {len(bundle)}-byte bundle")


def _content_seeds(bundles: list[bytes]) -> list[bytes]:
    """Frame contents as a sender writes them (CRC and fill left to _coded)."""
    found = []
    for number, bundle in enumerate(bundles):
        header = struct.pack(">QQIII", number, len(bundle), 0, 1, len(bundle))
        mode = _CONTENT_MODE | number % len(DEPTHS)
        found.append(bytes([mode]) + header + bundle + bytes(CRC_LEN))
        records = b"".join(RECORD.pack(number + i, len(bundle), 0, len(bundle)) + bundle
                           for i in range(2))
        packed = PACKED_HEADER.pack(len(records), 2) + records + bytes(CRC_LEN)
        found.append(bytes([_CONTENT_MODE | 0x08 | number % len(DEPTHS)]) + packed)
    return found


def seeds() -> list[bytes]:
    bundles = sorted(_seeds.valid_bundles(), key=len)[:6]
    found = []
    configs = (FrameConfig(), FrameConfig(frame_size=300, depth=1),
               FrameConfig(frame_size=1200, depth=8, dual_basis=True))
    for config in configs:
        for number, bundle in enumerate(bundles):
            found += [b"\0" + datagram for datagram in encode_frames(config, number, bundle)[:2]]
        packer = FramePacker(config)
        for bundle in bundles:
            packer.push(bundle, 0.0)
        found += [b"\0" + datagram for datagram in packer.pack(2, flush=True)]
    return found + _content_seeds(bundles)
