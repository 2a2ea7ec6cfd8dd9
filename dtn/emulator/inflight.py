"""Datagrams in flight: waiting in the proxy for their delivery time.

At 6 Mbit/s a 20-minute light time holds about 900 MB in flight, so the queue keeps only up to a
shared memory budget in RAM and appends the rest to spool files on disk. Delivery times along one
direction are non-decreasing (the channel keeps arrivals in order), so the in-flight data is a
FIFO: the oldest part lives in memory, the newest on disk, and while anything is on disk new
datagrams go to disk too, behind it. Once memory runs dry, the next chunk is read back. Datagrams
a reordering channel holds back arrive out of order; they wait in a small in-memory heap.

Spool files are private to the process (a temporary directory, removed on close), written as
records of `<float64 deliver_at><uint32 length><bytes>` in segments deleted once read. Copies
are what the spool costs at hundreds of MB/s, so records go out with one `writev` per batch
straight from the datagrams' buffers, and come back through one reused read buffer.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

# What a queued datagram costs beyond its bytes: the tuple, the float and the bytes header.
ITEM_OVERHEAD = 120
_RECORD = struct.Struct("<dI")
SEGMENT_BYTES = 8 << 20  # small: deleting a segment frees its page cache, ~0.1 ms per MiB
READ_AHEAD_BYTES = 1 << 20
WRITE_BATCH_BYTES = 256 << 10
MAX_IOVECS = 512  # buffers per writev, under Linux's IOV_MAX of 1024
MAX_RECORD_BYTES = 1 << 20  # far above any UDP datagram


class MemoryBudget:
    """Bytes of in-flight data all queues together may hold in RAM."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap = cap_bytes
        self.used = 0


class SpoolError(RuntimeError):
    """The spool failed (disk full, I/O error, a file that does not read back as written);
    `lost` datagrams went with it."""

    def __init__(self, message: str, lost: int) -> None:
        super().__init__(message)
        self.lost = lost


class _Spool:
    """A FIFO of records in segment files on disk."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._segments: collections.deque[Path] = collections.deque()
        self._serial = itertools.count()
        self._write_fd: int | None = None
        self._written = 0  # bytes in the segment being written
        self._pending: list[bytes] = []  # headers and datagrams not written yet
        self._pending_bytes = 0
        self._read_fd: int | None = None
        self._buffer = bytearray(READ_AHEAD_BYTES + MAX_RECORD_BYTES + _RECORD.size)
        self._leftover = 0  # bytes at the start of _buffer: a record cut off by the last read
        self.datagrams = 0  # not read back yet, including pending ones
        self.bytes = 0  # their payload bytes

    def append(self, deliver_at: float, data: bytes) -> None:
        header = _RECORD.pack(deliver_at, len(data))
        self._pending += (header, data)
        self._pending_bytes += len(header) + len(data)
        self.datagrams += 1
        self.bytes += len(data)
        if self._pending_bytes >= WRITE_BATCH_BYTES or len(self._pending) >= MAX_IOVECS:
            self._flush()

    def read(self) -> list[tuple[float, bytes]]:
        """The oldest records, about READ_AHEAD_BYTES of them (at least one while any are left)."""
        items: list[tuple[float, bytes]] = []
        view = memoryview(self._buffer)
        while self.datagrams and not items:
            if len(self._segments) <= 1:
                self._flush()  # reading up to the newest records: write them first
            if self._read_fd is None:
                self._read_fd = os.open(self._segments[0], os.O_RDONLY)
            start = self._leftover
            try:
                got = os.readv(self._read_fd, [view[start : start + READ_AHEAD_BYTES]])
            except OSError as error:
                message = f"cannot read the spool: {error.strerror}"
                raise SpoolError(message, self.datagrams) from None
            if not got:
                if len(self._segments) == 1 or self._leftover:
                    raise SpoolError(f"spool {self._segments[0]} ended early", self.datagrams)
                os.close(self._read_fd)
                self._read_fd = None
                self._segments.popleft().unlink()
                continue
            end = start + got
            consumed = self._parse(view[:end], items)
            self._leftover = end - consumed
            self._buffer[: self._leftover] = self._buffer[consumed:end]
        if not self.datagrams:
            self.close()  # all read back: the next spell of spooling starts on a fresh file
        return items

    def _parse(self, chunk: memoryview, items: list[tuple[float, bytes]]) -> int:
        """Append the whole records at the start of `chunk` to `items`; bytes consumed."""
        offset, size, header = 0, len(chunk), _RECORD.size
        unpack = _RECORD.unpack_from
        while size - offset >= header:
            deliver_at, length = unpack(chunk, offset)
            if length > MAX_RECORD_BYTES:
                raise SpoolError(f"spool record claims {length} bytes", self.datagrams)
            end = offset + header + length
            if end > size:
                break
            data = bytes(chunk[offset + header : end])
            items.append((deliver_at, data))
            self.bytes -= length
            offset = end
        self.datagrams -= len(items)
        return offset

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            if self._write_fd is None or self._written >= SEGMENT_BYTES:
                self._open_segment()
            _write_all(self._write_fd, pending)
        except OSError as error:
            lost = len(pending) // 2
            self.datagrams -= lost
            self.bytes -= sum(len(data) for data in pending[1::2])
            raise SpoolError(f"cannot write the spool: {error.strerror}", lost) from None
        self._written += sum(len(buffer) for buffer in pending)

    def _open_segment(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        path = self._directory / f"segment-{next(self._serial):08d}.spool"
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = 0
        self._segments.append(path)

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self._read_fd = self._write_fd = None
        for path in self._segments:
            path.unlink(missing_ok=True)
        self._segments.clear()
        self._pending, self._pending_bytes, self._leftover = [], 0, 0
        self.datagrams = self.bytes = 0


def _write_all(fd: int, buffers: list[bytes]) -> None:
    for start in range(0, len(buffers), MAX_IOVECS):
        batch = buffers[start : start + MAX_IOVECS]
        written = os.writev(fd, batch)
        rest = memoryview(b"".join(batch))[written:] if written < sum(map(len, batch)) else b""
        while rest:  # a short write (rare on regular files): finish it
            rest = rest[os.write(fd, rest) :]


class InFlightQueue:
    """Datagrams of one direction waiting for their delivery time, in delivery order.

    `push` and `pop_due` raise `SpoolError` when the disk fails; its `lost` datagrams are gone
    (on a read failure, everything spooled), the queue stays usable.
    """

    def __init__(self, budget: MemoryBudget, spool_parent: Path | None = None) -> None:
        self._budget = budget
        self._spool_parent = spool_parent
        self._spool_directory: Path | None = None
        self._spool: _Spool | None = None
        self._memory: collections.deque[tuple[float, bytes]] = collections.deque()
        self._tail = -math.inf  # the latest delivery time in the FIFO
        self._held_back: list[tuple[float, int, bytes]] = []  # out-of-order arrivals (a heap)
        self._held_serial = itertools.count()
        self._memory_datagrams = 0  # in the FIFO's memory part and the heap
        self._memory_bytes = 0

    @property
    def datagrams(self) -> int:
        return self._memory_datagrams + (self._spool.datagrams if self._spool else 0)

    @property
    def bytes(self) -> int:
        return self._memory_bytes + self.spooled_bytes

    @property
    def spooled_bytes(self) -> int:
        return self._spool.bytes if self._spool is not None else 0

    def push(self, deliver_at: float, data: bytes) -> None:
        cost = len(data) + ITEM_OVERHEAD
        budget = self._budget
        if deliver_at < self._tail:
            heapq.heappush(self._held_back, (deliver_at, next(self._held_serial), data))
        elif (
            self._spool is None or not self._spool.datagrams
        ) and budget.used + cost <= budget.cap:
            self._tail = deliver_at
            self._memory.append((deliver_at, data))
        else:
            self._tail = deliver_at
            self._spool_for_writing().append(deliver_at, data)
            return
        budget.used += cost
        self._memory_datagrams += 1
        self._memory_bytes += len(data)

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
        if not memory:
            self._refill()  # may raise: before anything is taken
        released = 0
        while len(due) < limit:
            if not memory and self._spool is not None and self._spool.datagrams:
                break  # the next call reads the spool; the heap must not overtake it
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
        self._memory_datagrams -= len(due)
        self._memory_bytes -= released
        self._budget.used -= released + ITEM_OVERHEAD * len(due)
        return due

    def _refill(self) -> None:
        """Move the oldest spooled chunk into memory."""
        if self._spool is None or not self._spool.datagrams:
            return
        try:
            items = self._spool.read()
        except SpoolError:
            self._close_spool()
            raise
        payload = sum(len(data) for _, data in items)
        self._memory.extend(items)
        self._memory_datagrams += len(items)
        self._memory_bytes += payload
        self._budget.used += payload + ITEM_OVERHEAD * len(items)

    def _spool_for_writing(self) -> _Spool:
        if self._spool is None:
            self._spool_directory = Path(
                tempfile.mkdtemp(prefix="dtn-emulator-spool-", dir=self._spool_parent)
            )
            self._spool = _Spool(self._spool_directory)
        return self._spool

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
        if self._spool_directory is not None:
            shutil.rmtree(self._spool_directory, ignore_errors=True)
        self._spool = self._spool_directory = None

    def close(self) -> None:
        """Drop everything still in flight and remove the spool files."""
        self._close_spool()
        self._budget.used -= self._memory_bytes + ITEM_OVERHEAD * self._memory_datagrams
        self._memory.clear()
        self._held_back.clear()
        self._memory_datagrams = self._memory_bytes = 0
