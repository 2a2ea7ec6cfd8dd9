"""Datagrams in flight: waiting in the proxy for their delivery time.

At 6 Mbit/s a 20-minute light time holds about 900 MB in flight, so the queue keeps only up to a
shared memory budget in RAM and appends the rest to spool files on disk. Delivery times along one
direction are non-decreasing (the channel keeps arrivals in order), so the in-flight data is a
FIFO: the oldest part lives in memory, the newest on disk, and while anything is on disk new
datagrams go to disk too, behind it. Once memory runs dry, the next chunk is read back. Datagrams
a reordering channel holds back arrive out of order; they wait in a small in-memory heap.

Spool files are private to the process (a temporary directory, removed on close), written as
records of `<float64 deliver_at><uint32 length><bytes>` in segments deleted once read.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import shutil
import struct
import tempfile
from pathlib import Path

# What a queued datagram costs beyond its bytes: the tuple, the float and the bytes header.
ITEM_OVERHEAD = 120
_RECORD = struct.Struct("<dI")
SEGMENT_BYTES = 8 << 20  # small: deleting a segment frees its page cache, ~0.1 ms per MiB
READ_AHEAD_BYTES = 1 << 20
MAX_RECORD_BYTES = 1 << 20  # far above any UDP datagram


class MemoryBudget:
    """Bytes of in-flight data all queues together may hold in RAM."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap = cap_bytes
        self.used = 0


class SpoolCorrupted(RuntimeError):
    """A spool file did not read back as written (disk trouble or tampering)."""


class _Spool:
    """A FIFO of records in segment files on disk."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._segments: collections.deque[Path] = collections.deque()
        self._serial = itertools.count()
        self._writer = None
        self._written = 0  # bytes in the segment being written
        self._reader = None
        self._leftover = b""  # the start of a record cut off at the end of a read
        self.bytes = 0  # record bytes (headers included) not read back yet
        self.datagrams = 0

    def append(self, deliver_at: float, data: bytes) -> None:
        if self._writer is None or self._written >= SEGMENT_BYTES:
            self._open_segment()
        record = _RECORD.pack(deliver_at, len(data)) + data
        self._writer.write(record)
        self._written += len(record)
        self.bytes += len(record)
        self.datagrams += 1

    def read(self, max_bytes: int) -> list[tuple[float, bytes]]:
        """The oldest records, about `max_bytes` of them (at least one while any are left)."""
        items: list[tuple[float, bytes]] = []
        while self.datagrams and not items:
            if self._reader is None:
                self._reader = open(self._segments[0], "rb", buffering=0)  # noqa: SIM115
            if len(self._segments) == 1:
                self._writer.flush()  # the segment being written: make its tail readable
            data = self._reader.read(max_bytes)
            if not data:
                if len(self._segments) == 1 or self._leftover:
                    raise SpoolCorrupted(f"spool segment {self._segments[0]} ended early")
                self._reader.close()
                self._reader = None
                self._segments.popleft().unlink()
                continue
            chunk = self._leftover + data
            offset = self._parse(chunk, items)
            self._leftover = chunk[offset:]
        if not self.datagrams:
            self.close()  # all read back: the next spell of spooling starts on a fresh file
        return items

    def _parse(self, chunk: bytes, items: list[tuple[float, bytes]]) -> int:
        """Append the whole records at the start of `chunk` to `items`; bytes consumed."""
        offset = 0
        header = _RECORD.size
        while len(chunk) - offset >= header:
            deliver_at, length = _RECORD.unpack_from(chunk, offset)
            if length > MAX_RECORD_BYTES:
                raise SpoolCorrupted(f"spool record claims {length} bytes")
            end = offset + header + length
            if end > len(chunk):
                break
            items.append((deliver_at, chunk[offset + header : end]))
            offset = end
        self.bytes -= offset
        self.datagrams -= len(items)
        return offset

    def _open_segment(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self._directory / f"segment-{next(self._serial):08d}.spool"
        self._writer = open(path, "ab", buffering=256 << 10)  # noqa: SIM115
        self._written = 0
        self._segments.append(path)

    def close(self) -> None:
        for handle in (self._reader, self._writer):
            if handle is not None:
                handle.close()
        for path in self._segments:
            path.unlink(missing_ok=True)
        self._segments.clear()
        self._reader = self._writer = None
        self._leftover = b""
        self.bytes = self.datagrams = 0


class InFlightQueue:
    """Datagrams of one direction waiting for their delivery time, in delivery order."""

    def __init__(self, budget: MemoryBudget, spool_parent: Path | None = None) -> None:
        self._budget = budget
        self._spool_parent = spool_parent
        self._spool_directory: Path | None = None
        self._spool: _Spool | None = None
        self._memory: collections.deque[tuple[float, bytes]] = collections.deque()
        self._tail = -math.inf  # the latest delivery time in the FIFO
        self._held_back: list[tuple[float, int, bytes]] = []  # out-of-order arrivals (a heap)
        self._held_serial = itertools.count()
        self.datagrams = 0
        self.bytes = 0

    @property
    def spooled_bytes(self) -> int:
        return self._spool.bytes if self._spool is not None else 0

    def push(self, deliver_at: float, data: bytes) -> None:
        self.datagrams += 1
        self.bytes += len(data)
        if deliver_at < self._tail:
            heapq.heappush(self._held_back, (deliver_at, next(self._held_serial), data))
            self._budget.used += len(data) + ITEM_OVERHEAD
            return
        self._tail = deliver_at
        cost = len(data) + ITEM_OVERHEAD
        budget = self._budget
        if (self._spool is None or not self._spool.datagrams) and budget.used + cost <= budget.cap:
            self._memory.append((deliver_at, data))
            budget.used += cost
        else:
            self._spool_for_writing().append(deliver_at, data)

    def next_due(self) -> float:
        """Delivery time of the earliest datagram; infinity when empty."""
        if not self._memory:
            self._refill()
        due = self._memory[0][0] if self._memory else math.inf
        if self._held_back and self._held_back[0][0] < due:
            return self._held_back[0][0]
        return due

    def pop_due(self, horizon: float, limit: int) -> list[tuple[float, bytes]]:
        """Up to `limit` datagrams due at or before `horizon`, earliest first."""
        due: list[tuple[float, bytes]] = []
        memory, held_back = self._memory, self._held_back
        released = 0
        while len(due) < limit:
            if not memory:
                self._refill()
            if held_back and (not memory or held_back[0][0] < memory[0][0]):
                if held_back[0][0] > horizon:
                    break
                deliver_at, _, data = heapq.heappop(held_back)
                item = (deliver_at, data)
            elif memory and memory[0][0] <= horizon:
                item = memory.popleft()
            else:
                break
            due.append(item)
            released += len(item[1])
        self.datagrams -= len(due)
        self.bytes -= released
        self._budget.used -= released + ITEM_OVERHEAD * len(due)
        return due

    def _refill(self) -> None:
        """Move the oldest spooled chunk into memory."""
        if self._spool is not None and self._spool.datagrams:
            items = self._spool.read(READ_AHEAD_BYTES)
            self._memory.extend(items)
            self._budget.used += sum(len(data) for _, data in items) + ITEM_OVERHEAD * len(items)

    def _spool_for_writing(self) -> _Spool:
        if self._spool is None:
            self._spool_directory = Path(
                tempfile.mkdtemp(prefix="dtn-emulator-spool-", dir=self._spool_parent)
            )
            self._spool = _Spool(self._spool_directory)
        return self._spool

    def close(self) -> None:
        """Drop everything still in flight and remove the spool files."""
        if self._spool is not None:
            self._spool.close()
        if self._spool_directory is not None:
            shutil.rmtree(self._spool_directory, ignore_errors=True)
        self._spool = self._spool_directory = None
        self._budget.used -= sum(len(d) + ITEM_OVERHEAD for _, d in self._memory)
        self._budget.used -= sum(len(d) + ITEM_OVERHEAD for _, _, d in self._held_back)
        self._memory.clear()
        self._held_back.clear()
        self.datagrams = self.bytes = 0
