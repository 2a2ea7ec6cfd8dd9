"""The sender's side of frame version 2: queued bundles packed into full frames (sans-I/O).

    packer = FramePacker(FrameConfig(frame_size=8192, depth=4), first_id=...)
    packer.push(bundle_bytes, now)              # queue; returns the bundle id it will carry
    datagrams = packer.pack(max_frames=64)      # only full frames
    datagrams = packer.pack(64, flush=True)     # and the rest in one shortened frame

A frame is filled from the front of the queue: the rest of the first bundle, then whole small
bundles, and the head of the next bundle that does not fit, as records (docs/fec.md). So a
1 KiB bundle costs its 18-byte record header and a share of one frame's parity, the same per
byte as a 1 MB bundle, and many frames are coded in one call. A partly filled frame is made
only on `flush` (the caller's linger has passed): until then more bundles may fill it.
"""

from __future__ import annotations

from collections import deque

import crc32c
import numpy as np

from dtn.fec.frame import (
    CRC_LEN,
    MAX_PACKED_BUNDLE,
    OVERHEAD,
    PACKED_HEADER,
    PACKED_OVERHEAD,
    PREFIX_LEN,
    RECORD,
    FrameConfig,
    Layout,
    code_contents,
)

# A piece shorter than this is not started at the end of a frame (unless it ends its bundle):
# its record header would cost more than it carries.
_MIN_PIECE = 64
# Frames coded per RS call: enough to spread numpy's per-call cost, few enough to stay in cache.
_FRAMES_PER_CALL = 256


class _Queued:
    __slots__ = ("bundle_id", "data", "offset", "queued_at")

    def __init__(self, bundle_id: int, data: memoryview, queued_at: float) -> None:
        self.bundle_id = bundle_id
        self.data = data
        self.offset = 0  # bytes already packed
        self.queued_at = queued_at


class FramePacker:
    """Queues bundles and packs them into version 2 frames, in order."""

    def __init__(self, config: FrameConfig | None = None, *, first_id: int = 0) -> None:
        self.config = config or FrameConfig()
        self._layout = self.config.full_layout()
        self._width = self._layout.content_len
        self._format = self.config.packed_format
        self._queue: deque[_Queued] = deque()
        self._next_id = first_id % 2**64
        self.queued_bytes = 0  # bundle bytes not yet packed
        self.bundles_packed = 0  # bundles whose last byte went into a frame
        self.frames_packed = 0
        self.frames_short = 0  # of them, flushed before they were full

    @property
    def datagram_size(self) -> int:
        """Bytes of a full frame on the wire."""
        return PREFIX_LEN + self._layout.body_len

    def push(self, data: bytes, now: float) -> int:
        """Queue one bundle (not copied: the caller must not change it); returns its id."""
        if not 0 < len(data) <= MAX_PACKED_BUNDLE:
            raise ValueError(f"a packed bundle is 1..{MAX_PACKED_BUNDLE} bytes, got {len(data)}")
        bundle_id = self._next_id
        self._next_id = (bundle_id + 1) % 2**64
        self._queue.append(_Queued(bundle_id, memoryview(data).cast("B"), now))
        self.queued_bytes += len(data)
        return bundle_id

    @property
    def queued_bundles(self) -> int:
        return len(self._queue)

    def oldest(self) -> float | None:
        """When the bundle at the head of the queue was pushed, or None if nothing is queued."""
        return self._queue[0].queued_at if self._queue else None

    def full_frames(self) -> int:
        """How many full frames the queue fills now (a lower bound, without flushing)."""
        room = self._width - PACKED_OVERHEAD
        need = self.queued_bytes + RECORD.size * len(self._queue)
        return need // room

    def pack(self, max_frames: int, flush: bool = False) -> list[bytes]:
        """Up to `max_frames` datagrams of full frames; with `flush`, what is left after them
        (if they leave room) goes out in one frame as short as its content allows."""
        datagrams: list[bytes] = []
        while len(datagrams) < max_frames:
            full = min(max_frames - len(datagrams), self.full_frames(), _FRAMES_PER_CALL)
            if full <= 0:
                break
            datagrams += self._code(self._layout, full)
        while flush and self._queue and len(datagrams) < max_frames:
            need = PACKED_OVERHEAD + self.queued_bytes + RECORD.size * len(self._queue)
            layout = Layout.for_content(max(need, OVERHEAD), self.config.depth)
            if layout.content_len >= self._width:
                layout = self._layout
            else:
                self.frames_short += 1
            datagrams += self._code(layout, 1)
        self.frames_packed += len(datagrams)
        return datagrams

    def _code(self, layout: Layout, frames: int) -> list[bytes]:
        width = layout.content_len
        content = bytearray(frames * width)
        for frame in range(frames):
            self._fill(content, frame * width, width)
        rows = np.frombuffer(content, dtype=np.uint8).reshape(frames, width)
        return code_contents(self._format, layout, rows)

    def _fill(self, content: bytearray, base: int, width: int) -> None:
        """Write one frame's records from the queue into content[base : base + width]."""
        queue, header_size = self._queue, RECORD.size
        pack_record = RECORD.pack_into
        at = base + PACKED_HEADER.size
        limit = base + width - CRC_LEN
        records = taken = 0
        while queue:
            item = queue[0]
            data, offset = item.data, item.offset
            left = len(data) - offset
            room = limit - at - header_size
            if room < min(left, _MIN_PIECE):
                break
            length = min(left, room)
            pack_record(content, at, item.bundle_id, len(data), offset, length)
            at += header_size
            content[at : at + length] = data[offset : offset + length]
            at += length
            taken += length
            records += 1
            if length == left:
                queue.popleft()
                self.bundles_packed += 1
            else:
                item.offset = offset + length
                break  # the frame is full
        self.queued_bytes -= taken
        PACKED_HEADER.pack_into(content, base, at - base - PACKED_HEADER.size, records)
        crc = crc32c.crc32c(memoryview(content)[base:at])
        content[at : at + CRC_LEN] = crc.to_bytes(CRC_LEN, "big")


def frame_room(config: FrameConfig) -> int:
    """Bundle bytes one full version 2 frame carries in a single record."""
    return config.full_layout().content_len - PACKED_OVERHEAD - RECORD.size


def packed_efficiency(config: FrameConfig, bundle_bytes: int | None = None) -> float:
    """Bundle bytes per datagram byte of full version 2 frames: for a stream of bundles of
    `bundle_bytes` each (a record header per bundle and per frame boundary crossed), or with
    one record per frame (bundles much larger than a frame) when None."""
    layout = config.full_layout()
    room = layout.content_len - PACKED_OVERHEAD
    datagram = PREFIX_LEN + layout.body_len
    if bundle_bytes is None:
        return (room - RECORD.size) / datagram
    headers_per_byte = 1 / bundle_bytes + 1 / room
    return room / (1 + RECORD.size * headers_per_byte) / datagram
