"""Append-only segment files holding small bundles' bytes beside the store's database.

SQLite writes a 10 KiB bundle as three overflow pages, each one `write()` to the WAL and again
to the database at the checkpoint, and walks the page chain again to free it: on this kind of
machine half of what storing and releasing a small bundle costs. Here the bytes of all the
bundles of one commit go to the end of the active segment file in one `writev()`, and
releasing them is arithmetic: a segment file is deleted once none of its bytes is live.

A row names its bytes with a reference, `<segment>.seg:<offset>:<length>:<crc32c>`, kept in
its `file` column. The bytes are written before the commit of the row that names them (and
fsynced first under synchronous=FULL), so a row never names bytes a process crash could lose.
Under synchronous=NORMAL a power loss may keep a committed row while its bytes did not reach
the disk: the CRC-32C makes reading them a StoreError, never wrong bytes.

A segment that long-lived bundles keep alive while most of it is dead is compacted: the store
copies its live bundles to the active segment (`sparse()` says which one and when).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from crc32c import crc32c

from .errors import StoreError

SEGMENT_BYTES = 64 << 20  # a segment is sealed once it holds this much
_IOV_MAX = 1024  # pieces one writev() may take (Linux's IOV_MAX)
SEGMENT_FILE = re.compile(r"([0-9]+)\.seg")
_REF = re.compile(r"([0-9]+)\.seg:([0-9]+):([0-9]+):([0-9]+)")


def segment_of(ref: str) -> str | None:
    """The segment file name a reference names; None when it is not a reference."""
    match = _REF.fullmatch(ref)
    return None if match is None else f"{match[1]}.seg"


class SegmentLog:
    """The segment files of one store: appends wait in memory until `flush()`; what becomes
    live or dead counts only once the store says its commit is done (`committed()`)."""

    def __init__(self, directory: Path, *, full_sync: bool,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._full_sync = full_sync
        self._segment_bytes = segment_bytes
        self._live: defaultdict[int, int] = defaultdict(int)  # segment -> live bytes
        self._sizes: dict[int, int] = {}  # sealed segment -> its file's size
        self._fds: dict[int, int] = {}
        self._active = 0  # 0: none yet; the first append makes one
        self._end = 0  # the active segment's size, pending appends included
        self._flushed = 0  # the active segment's size on disk
        self._pending: list[bytes] = []
        self._pending_at: dict[int, bytes] = {}  # offset in the active segment -> bytes
        self._added: defaultdict[int, int] = defaultdict(int)  # live after the commit
        self._released: defaultdict[int, int] = defaultdict(int)  # dead after the commit
        self._dead = 0  # bytes of sealed segments no live row names, as of the last commit
        self._stuck: set[int] = set()  # segments whose compaction met unreadable bytes
        self._sealed_changed = False  # a segment was sealed, or bytes of one released
        self.new_file = False  # a segment file was made since the store last synced its folder

    def open(self, live_refs: Iterable[str]) -> None:
        """Count what the live rows name; the next segment is numbered after every one there."""
        top = 0
        for ref in live_refs:
            match = _REF.fullmatch(ref)
            if match is not None:
                self._live[int(match[1])] += int(match[3])
        if self.directory.is_dir():
            for entry in self.directory.iterdir():
                match = SEGMENT_FILE.fullmatch(entry.name)
                if match is not None:
                    number = int(match[1])
                    top = max(top, number)
                    self._sizes[number] = entry.stat().st_size
        top = max([top, *self._live])
        self._sealed_changed = bool(self._sizes)
        self._active = top + 1
        self._end = self._flushed = 0

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # --- writing ----------------------------------------------------------------------------

    def append(self, data: bytes) -> str:
        """Queue `data` for the active segment; the reference the row will hold."""
        offset = self._end
        self._pending.append(data)
        self._pending_at[offset] = data
        self._end += len(data)
        self._added[self._active] += len(data)
        return f"{self._active}.seg:{offset}:{len(data)}:{crc32c(data)}"

    def mark(self) -> tuple[int, int]:
        return len(self._pending), self._end

    def undo(self, mark: tuple[int, int]) -> None:
        """Forget the appends made since `mark` (their rows were not stored). Appends are only
        written by flush(), so all of them are still pending in the active segment."""
        count, end = mark
        for data in self._pending[count:]:
            self._added[self._active] -= len(data)
        for offset in [o for o in self._pending_at if o >= end]:
            del self._pending_at[offset]
        del self._pending[count:]
        self._end = end

    def release(self, ref: str) -> bool:
        """The row naming `ref` is no longer live, from the next commit on. Whether `ref` is a
        segment reference (if not, the caller owns what it names)."""
        match = _REF.fullmatch(ref)
        if match is None:
            return False
        number = int(match[1])
        self._released[number] += int(match[3])
        self._sealed_changed |= number in self._sizes
        return True

    def flush(self) -> None:
        """Write the pending appends (and fsync them under synchronous=FULL); a segment that
        reached its size is sealed after (so one commit's appends share a segment)."""
        if not self._pending:
            return
        fd = self._fd(self._active, create=True)
        try:
            for start in range(0, len(self._pending), _IOV_MAX):
                _write_all(fd, self._pending[start : start + _IOV_MAX])
            if self._full_sync:
                os.fsync(fd)
        except OSError as exc:
            # Where the file ends is unknown now: seal it as it is and go on in a new one.
            self._end = os.fstat(fd).st_size
            self._pending.clear()
            self._pending_at.clear()
            self._seal()
            raise StoreError(f"cannot write segment {self._active - 1}.seg: {exc}") from exc
        self._flushed = self._end
        self._pending.clear()
        self._pending_at.clear()
        if self._end >= self._segment_bytes:
            self._seal()

    def committed(self) -> list[Path]:
        """The store's commit is done: count what it made live or dead. The sealed segment
        files now wholly dead, for the store to delete."""
        for number, size in self._added.items():
            self._live[number] += size
        for number, size in self._released.items():
            self._live[number] -= size
        self._added.clear()
        self._released.clear()
        if self._end and self._live.get(self._active, 0) <= 0:
            # Wholly dead (every bundle taken): start it again empty rather than grow it. No
            # live row names it; a tombstone may, but never reads it.
            os.ftruncate(self._fds[self._active], 0)
            self._end = self._flushed = 0
        if not self._sealed_changed:
            return []
        self._sealed_changed = False
        dead = [n for n in self._sizes if self._live.get(n, 0) <= 0]
        for number in dead:
            del self._sizes[number]
            self._live.pop(number, None)
            self._stuck.discard(number)
            fd = self._fds.pop(number, None)
            if fd is not None:
                os.close(fd)
        self._dead = sum(size - self._live.get(n, 0) for n, size in self._sizes.items())
        return [self.directory / f"{number}.seg" for number in dead]

    def rolled_back(self) -> None:
        """The store's commit failed: nothing it added or released counts. (Bytes it wrote
        stay in the segment, named by no row.)"""
        self._added.clear()
        self._released.clear()

    def _seal(self) -> None:
        """The active segment takes no more appends. Its size counts for compaction; it is
        deleted by the first commit that finds it wholly dead."""
        self._sizes[self._active] = self._end
        self._sealed_changed = True
        self._active += 1
        self._end = self._flushed = 0

    # --- reading ----------------------------------------------------------------------------

    def read(self, ref: str, row_id: int) -> bytes:
        """The bytes a reference names; StoreError when they cannot be read back intact."""
        match = _REF.fullmatch(ref)
        if match is None:
            raise StoreError(f"bundle row {row_id}: {ref!r} is not a segment reference")
        number, offset, length, crc = (int(group) for group in match.groups())
        data = None
        if number == self._active and offset >= self._flushed:
            data = self._pending_at.get(offset)
        if data is None:
            try:
                data = os.pread(self._fd(number, create=False), length, offset)
            except OSError as exc:
                raise StoreError(f"bundle row {row_id}: cannot read segment {number}.seg: "
                                 f"{exc}") from exc
        if len(data) != length or crc32c(data) != crc:
            raise StoreError(f"bundle row {row_id}: its {length} bytes in segment {number}.seg "
                             "are damaged or missing (a power loss under synchronous=NORMAL?)")
        return data

    def _fd(self, number: int, *, create: bool) -> int:
        fd = self._fds.get(number)
        if fd is None:
            flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
            if create:
                self.directory.mkdir(mode=0o700, exist_ok=True)
                self.new_file = True
            fd = self._fds[number] = os.open(self.directory / f"{number}.seg", flags, 0o600)
        return fd

    # --- compaction -------------------------------------------------------------------------

    def sparse(self) -> int | None:
        """A sealed segment worth compacting: once the dead bytes of sealed segments exceed a
        segment's worth, the one with the smallest live share, if under half of it."""
        if self._dead <= self._segment_bytes:
            return None
        candidates = [(self._live.get(n, 0) / size, n) for n, size in self._sizes.items()
                      if size and n not in self._stuck]
        if not candidates:
            return None
        share, number = min(candidates)
        return number if share < 0.5 else None

    def stuck(self, number: int) -> None:
        """Compaction could not read all of a segment: do not pick it again this run."""
        self._stuck.add(number)


def _write_all(fd: int, pieces: list[bytes]) -> None:
    written = os.writev(fd, pieces)
    total = sum(len(piece) for piece in pieces)
    if written < total:  # a short write (a signal, a full disk): the rest, in order
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
