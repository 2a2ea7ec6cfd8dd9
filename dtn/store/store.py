"""The persistent bundle store: SQLite in WAL mode, written in grouped commits.

Every write goes into one open transaction; `commit()` makes all of them durable with one fsync
(`synchronous=FULL`: durable across power loss; `NORMAL`: across a process crash). The caller
tells nobody that a bundle was accepted until `commit()` has returned. A crash before that loses
only the uncommitted group, which nobody was told about.

Nothing here keeps a Python-side copy of the stored bundles: the row counters for the quota and
the next ID are the only state, so resident memory does not grow with the number stored.

Large payloads live as files in the payload directory beside the database (`<db>.payloads/`).
A file is written and fsynced, renamed to its row's ID and the directory fsynced before the row
is committed; it is deleted only after the commit that tombstones or purges its row. A crash in
between leaves a file no live row names, removed when the store is next opened.

A smaller bundle's bytes go to an append-only segment file there (dtn/store/segments.py),
written before the commit of the row that names them.

A bundle above `FILE_ABOVE` bytes is kept whole as a file there too, `<id>.bundle`, written
before its row is committed (and, under synchronous=FULL, fsynced with the directory at that
commit): SQLite would write it twice (WAL, then checkpoint) in 4 KiB pages and walk its page
chain again to free it; a file is one write, one read and an unlink.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import DuplicateBundle, StoreError, StoreFull
from .schema import DDL, LIVE_STATES, MIGRATIONS, SCHEMA_VERSION, State
from .segments import SEGMENT_BYTES, SegmentLog, segment_of

_COLUMNS = (
    "id, key, state, next_hop, priority, created, expires, received, size, custodian, "
    "retransmit_at, data, file"
)
_COLUMN_NAMES = tuple(_COLUMNS.split(", "))
_FROM = "bundles LEFT JOIN payloads USING (id)"  # a tombstone has no payloads row
_REAL = (float, int)  # SQLite hands back a REAL column's whole values as int when stored so
_OPTIONAL_TEXT = (str, type(None))
_COLUMN_TYPES = ((int,), (str,), (int,), _OPTIONAL_TEXT, (int,), _REAL, _REAL, _REAL, (int,),
                 _OPTIONAL_TEXT, (*_REAL, type(None)), (bytes, type(None)), _OPTIONAL_TEXT)
_STATES = {int(state): state for state in State}
_LIVE = f"state IN ({', '.join(str(int(s)) for s in LIVE_STATES)})"
_INSERT = (
    "INSERT INTO bundles (id, key, state, next_hop, priority, created, expires, received, size, "
    "custodian, adu, frag_offset, frag_length, file) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_PAYLOAD = "INSERT INTO payloads (id, data) VALUES (?, ?)"
_SYNCHRONOUS = ("FULL", "NORMAL")
_ID_BATCH = 500  # ids bound into one statement (SQLite's limit is 32766 variables)
_CACHE_KIB = 16 * 1024  # SQLite page cache bound, whatever the number stored
_PAYLOAD_FILE = re.compile(r"[0-9]+\.payload")  # what _adopt names a row's payload file
_BUNDLE_SUFFIX = ".bundle"
_BUNDLE_FILE = re.compile(r"[0-9]+\.bundle")  # a whole bundle kept as a file
FILE_ABOVE = 64 * 1024  # bytes; a larger bundle is kept as a file, not in SQLite
_SPOOL_SUFFIX = ".part"  # a payload file being written, not yet any row's


@dataclass(frozen=True, slots=True)
class Quota:
    max_bytes: int | None = None
    max_bundles: int | None = None


@dataclass(slots=True)
class NewBundle:
    """What the agent hands the store for one accepted bundle."""

    key: str
    data: bytes
    state: State
    created: float
    expires: float
    received: float
    next_hop: str | None = None
    priority: int = 1
    custodian: str | None = None
    adu: str | None = None
    frag_offset: int | None = None
    frag_length: int | None = None
    # A large ADU's payload: a file from BundleStore.spool_path(), written in full. `data` is
    # then the bundle with an empty payload block. The store takes the file over.
    file: Path | None = None

    @property
    def size(self) -> int:
        """Bytes counted against the quota."""
        return len(self.data) + (0 if self.file is None else self.file.stat().st_size)


@dataclass(slots=True)
class StoredBundle:
    id: int
    key: str
    state: State
    next_hop: str | None
    priority: int
    created: float
    expires: float
    received: float
    size: int
    custodian: str | None
    retransmit_at: float | None
    data: bytes | None
    file: Path | None  # a large ADU's payload (data is then the bundle without it)

    @classmethod
    def from_row(cls, row: tuple, payload_dir: Path, segments: SegmentLog) -> StoredBundle:
        """The record of a row; StoreError when a value is not what the schema declares (SQLite
        keeps whatever a damaged or hand-edited file holds)."""
        for name, value, kinds in zip(_COLUMN_NAMES, row, _COLUMN_TYPES, strict=True):
            if not isinstance(value, kinds):
                raise StoreError(f"bundle row {row[0]!r}: column {name} holds {value!r}, "
                                 f"not {' or '.join(kind.__name__ for kind in kinds)}")
        state = _STATES.get(row[2])
        if state is None:
            raise StoreError(f"bundle row {row[0]}: column state holds {row[2]}, not one of "
                             f"{', '.join(f'{s.value} ({s.name})' for s in State)}")
        name = row[12]
        if state is State.DONE:  # a tombstone: no bytes (it may still name released ones)
            return cls(row[0], row[1], state, *row[3:11], None, None)
        if name is None:
            return cls(row[0], row[1], state, *row[3:12], None)
        if segment_of(name) is not None:
            return cls(row[0], row[1], state, *row[3:11], segments.read(name, row[0]), None)
        if _BUNDLE_FILE.fullmatch(name):
            try:
                data = (payload_dir / name).read_bytes()
            except OSError as exc:
                raise StoreError(f"bundle row {row[0]}: cannot read its file: {exc}") from exc
            return cls(row[0], row[1], state, *row[3:11], data, None)
        if not _PAYLOAD_FILE.fullmatch(name):  # never a path elsewhere
            raise StoreError(f"bundle row {row[0]}: column file holds {name!r}, not a payload file")
        return cls(row[0], row[1], state, *row[3:12], payload_dir / name)


class BundleStore:
    """Bundles on disk, with the queries a bundle protocol agent needs answered fast."""

    def __init__(
        self, path: str | Path, *, quota: Quota | None = None, synchronous: str = "FULL",
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        self.path = Path(path)
        self.payload_dir = self.path.with_name(self.path.name + ".payloads")
        self.quota = quota or Quota()
        self._doomed: list[Path] = []  # payload files to delete once the commit is done
        self._full = synchronous == "FULL"
        self._segments = SegmentLog(self.payload_dir, full_sync=self._full,
                                    segment_bytes=segment_bytes)
        self._unsynced_dir = False  # a bundle file was made since the last commit
        self._in_transaction = False
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open bundle store {self.path}: {exc}") from exc
        try:
            self._open(synchronous)
        except BaseException:
            # Closed now, not when the garbage collector finds it: a caller that retries or
            # replaces the file must not meet this connection's WAL and locks.
            self._db.close()
            raise

    def _open(self, synchronous: str) -> None:
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            # Python's SQLite is built with SECURE_DELETE on: every page a tombstone or a purge
            # frees is zeroed and written to the WAL, and then to the database again (a released
            # 28 KB fragment cost 29 KB of WAL, as much as storing it). FAST zeroes what lies on
            # b-tree pages at no extra I/O and leaves freed overflow pages as they are (RFC 9171
            # asks no erasure; the payloads are BCB-encrypted under the default policy).
            self._db.execute("PRAGMA secure_delete=FAST")
            self._db.executescript(DDL)
            self._check_schema()
            self._count, self._bytes = self._live_totals()
            top = self._db.execute("SELECT MAX(id) FROM bundles").fetchone()[0] or 0
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open bundle store {self.path}: {exc}") from exc
        self._next_id = max(top + 1, self._meta_count("next_id", 1))
        self._segments.open(self._remove_orphan_files())

    def _live_totals(self) -> tuple[int, int]:
        """(live bundles, their bytes): saved at each commit; counted on a store without them."""
        saved = self.get_meta("live_totals")
        if saved is not None:
            counts = saved.split() if isinstance(saved, str) else ()
            if len(counts) != 2 or not all(c.isascii() and c.isdigit() for c in counts):
                raise StoreError(f"{self.path}: meta value live_totals is {saved!r}, not "
                                 "'<bundles> <bytes>'")
            return int(counts[0]), int(counts[1])
        count, size = self._db.execute(
            f"SELECT COUNT(*), TOTAL(size) FROM bundles WHERE {_LIVE}"
        ).fetchone()
        return count, int(size)

    def _meta_count(self, name: str, default: int) -> int:
        value = self.get_meta(name, default)
        if value.__class__ is not int or value < 0:
            raise StoreError(f"{self.path}: meta value {name} is {value!r}, not a count")
        return value

    # --- transactions -----------------------------------------------------------------------

    def _write(self) -> sqlite3.Connection:
        if not self._in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
        return self._db

    def commit(self) -> None:
        """Make every write since the last commit durable (one fsync under synchronous=FULL)."""
        if not self._in_transaction:
            return
        try:
            self._compact()
            self._segments.flush()  # the bytes, before the rows that name them
            if self._full and self._segments.new_file:
                self._unsynced_dir = True
                self._segments.new_file = False
            if self._unsynced_dir:  # the bundle files' names, before the rows that name them
                _fsync_dir(self.payload_dir)
                self._unsynced_dir = False
            # Saved in the same transaction as the rows they count, so always consistent.
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (("next_id", self._next_id), ("live_totals", f"{self._count} {self._bytes}")),
            )
            self._db.execute("COMMIT")
        except (sqlite3.DatabaseError, StoreError, OSError) as exc:
            self._db.execute("ROLLBACK")
            self._doomed.clear()  # their rows are live again
            self._segments.rolled_back()
            raise StoreError(f"commit to {self.path} failed, the group is lost: {exc}") from exc
        finally:
            self._in_transaction = False
        self._doomed += self._segments.committed()
        doomed, self._doomed = self._doomed, []
        for file in doomed:
            file.unlink(missing_ok=True)

    def close(self) -> None:
        """Commit what is pending and close. (Dropping the object without this is a crash.)"""
        self.commit()
        self._db.close()
        self._segments.close()

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    @property
    def next_id(self) -> int:
        """The ID the next stored bundle will get: every stored ID is below it."""
        return self._next_id

    # --- accepting --------------------------------------------------------------------------

    def _check_quota(self, bundles: int, size: int) -> None:
        quota = self.quota
        if quota.max_bundles is not None and self._count + bundles > quota.max_bundles:
            raise StoreFull(
                f"store full: {self._count} bundles stored, quota {quota.max_bundles}", "bundles"
            )
        if quota.max_bytes is not None and self._bytes + size > quota.max_bytes:
            raise StoreFull(
                f"store full: {self._bytes} + {size} bytes exceeds the quota of "
                f"{quota.max_bytes} bytes",
                "bytes",
            )

    def add(self, bundle: NewBundle) -> int:
        """Store one bundle in the open transaction; its new ID (also its custody ID)."""
        return self.add_many([bundle])[0]

    def add_many(self, bundles: list[NewBundle], *, enforce_quota: bool = True) -> list[int]:
        """Store bundles in one statement batch, all or none. StoreFull or DuplicateBundle.

        `enforce_quota=False` is for replacing stored bundles by their fragments or their
        reassembly, which frees about what it takes."""
        sizes = [b.size for b in bundles]
        size = sum(sizes)
        if enforce_quota:
            self._check_quota(len(bundles), size)
        first = self._next_id
        segments = self._segments
        mark = segments.mark()
        files = [
            self._adopt(b.file, first + i) if b.file is not None
            else self._bundle_file(b.data, first + i) if len(b.data) > FILE_ABOVE
            else segments.append(b.data)
            for i, b in enumerate(bundles)
        ]
        rows = [
            (
                first + i,
                b.key,
                int(b.state),
                b.next_hop,
                b.priority,
                b.created,
                b.expires,
                b.received,
                sizes[i],
                b.custodian,
                b.adu,
                b.frag_offset,
                b.frag_length,
                files[i],
            )
            for i, b in enumerate(bundles)
        ]
        payloads = [  # a large ADU's bundle without its payload; all else is in a file
            (first + i, b.data) for i, b in enumerate(bundles) if b.file is not None
        ]
        db = self._write()
        try:
            if len(rows) == 1:  # one statement is atomic by itself; the new id cannot clash
                db.execute(_INSERT, rows[0])
                if payloads:
                    db.execute(_INSERT_PAYLOAD, payloads[0])
            else:
                db.execute("SAVEPOINT add_many")
                try:
                    db.executemany(_INSERT, rows)
                    db.executemany(_INSERT_PAYLOAD, payloads)
                except sqlite3.IntegrityError:
                    db.execute("ROLLBACK TO add_many")
                    raise
                finally:
                    db.execute("RELEASE add_many")
        except sqlite3.IntegrityError as exc:
            segments.undo(mark)
            for name in files:  # no row names them: an orphan until unlinked
                if segment_of(name) is None:
                    (self.payload_dir / name).unlink(missing_ok=True)
            raise DuplicateBundle(f"a bundle in this batch is already stored: {exc}") from None
        self._next_id = first + len(bundles)
        self._count += len(bundles)
        self._bytes += size
        return list(range(first, first + len(bundles)))

    # --- looking up -------------------------------------------------------------------------

    def known(self, key: str) -> tuple[State, str | None] | None:
        """(state, previous custodian) of a bundle ID this store holds or remembers."""
        row = self._db.execute(
            "SELECT state, custodian FROM bundles WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (State(row[0]), row[1])

    def state(self, bundle_id: int) -> State | None:
        """The state of a row by its ID (None: no such row), without reading its bytes."""
        row = self._db.execute("SELECT state FROM bundles WHERE id = ?", (bundle_id,)).fetchone()
        return None if row is None else _STATES.get(row[0])

    def get(self, bundle_id: int) -> StoredBundle | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE id = ?", (bundle_id,)
        ).fetchone()
        return None if row is None else self._record(row)

    def due(self, next_hop: str, limit: int) -> list[StoredBundle]:
        """Bundles queued for a neighbour: highest priority first, then oldest."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE next_hop = ? AND state = {State.PENDING} "
            "ORDER BY priority DESC, created LIMIT ?",
            (next_hop, limit),
        )
        return [self._record(row) for row in rows]

    def unrouted(self, after_id: int, limit: int) -> list[StoredBundle]:
        """Queued bundles that had no route, in ID order after `after_id`."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE next_hop IS NULL AND state = {State.PENDING} "
            "AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [self._record(row) for row in rows]

    def deliverable(self, after_id: int, limit: int) -> list[StoredBundle]:
        """Bundles waiting for the application, in ID order after `after_id`."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE state = {State.DELIVERABLE} AND id > ? "
            "ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [self._record(row) for row in rows]

    def fragment_spans(self, adu: str) -> list[tuple[int, int, int]]:
        """(id, offset, length) of the stored fragments of one ADU awaiting reassembly."""
        return self._db.execute(
            f"SELECT id, frag_offset, frag_length FROM bundles WHERE adu = ? "
            f"AND state = {State.FRAGMENT}",
            (adu,),
        ).fetchall()

    def load(self, ids: Iterable[int]) -> list[StoredBundle]:
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE id IN ({marks})", ids)
        return [self._record(row) for row in rows]

    def next_expiry(self) -> float | None:
        return self._db.execute("SELECT MIN(expires) FROM bundles").fetchone()[0]

    def next_retransmit(self, next_hop: str) -> float | None:
        """Earliest custody retransmission time (link clock) among bundles sent to a neighbour."""
        return self._db.execute(
            f"SELECT MIN(retransmit_at) FROM bundles WHERE next_hop = ? "
            f"AND state = {State.IN_FLIGHT}",
            (next_hop,),
        ).fetchone()[0]

    # --- state changes ----------------------------------------------------------------------

    def set_next_hop(self, bundle_id: int, next_hop: str) -> None:
        self._write().execute("UPDATE bundles SET next_hop = ? WHERE id = ?", (next_hop, bundle_id))

    def mark_in_flight(self, bundle_id: int, retransmit_at: float) -> None:
        self._write().execute(
            f"UPDATE bundles SET state = {State.IN_FLIGHT}, retransmit_at = ? WHERE id = ?",
            (retransmit_at, bundle_id),
        )

    def mark_handed(self, bundle_id: int) -> None:
        """In flight without a custody timer: the convergence layer says when the neighbour has
        it (`finish`) or does not (`requeue`); a restart queues it again (`requeue_handed`)."""
        self._write().execute(
            f"UPDATE bundles SET state = {State.IN_FLIGHT}, retransmit_at = NULL WHERE id = ?",
            (bundle_id,),
        )

    def requeue_handed(self) -> int:
        """Queue again every bundle a convergence layer held when the node stopped; how many."""
        return self._write().execute(
            f"UPDATE bundles SET state = {State.PENDING} "
            f"WHERE state = {State.IN_FLIGHT} AND retransmit_at IS NULL"
        ).rowcount

    def requeue_overdue(self, next_hop: str, link_time: float) -> list[int]:
        """Put back in the queue the bundles whose custody timer has run out; their IDs."""
        rows = self._write().execute(
            f"UPDATE bundles SET state = {State.PENDING} WHERE next_hop = ? "
            f"AND state = {State.IN_FLIGHT} AND retransmit_at <= ? RETURNING id",
            (next_hop, link_time),
        )
        return [row[0] for row in rows]

    def requeue(self, bundle_ids: Iterable[int]) -> list[int]:
        """Put bundles in flight back in the queue at once; the IDs that were in flight."""
        db = self._write()
        return [
            row[0]
            for bundle_id in bundle_ids
            for row in db.execute(
                f"UPDATE bundles SET state = {State.PENDING} WHERE id = ? "
                f"AND state = {State.IN_FLIGHT} RETURNING id",
                (bundle_id,),
            )
        ]

    def _to_tombstone(self, where: str, params: tuple) -> list[tuple]:
        """Rows (size, file, id, next_hop, retransmit_at) turned into tombstones."""
        rows = (
            self._write()
            .execute(
                f"UPDATE bundles SET state = {State.DONE} WHERE {where} "
                "RETURNING size, file, id, next_hop, retransmit_at",
                params,
            )
            .fetchall()
        )
        # A segment reference is released (the tombstone keeps it: nothing reads it). The rest
        # is rare: large bundles and ADUs, and small bundles of a store older than schema 4.
        release = self._segments.release
        elsewhere = [row for row in rows if row[1] is None or not release(row[1])]
        if elsewhere:
            self._db.executemany("DELETE FROM payloads WHERE id = ?",
                                 [(row[2],) for row in elsewhere])
        with_file = [row for row in elsewhere if row[1] is not None]
        if with_file:
            self._doom(row[1] for row in with_file)
            self._db.executemany("UPDATE bundles SET file = NULL WHERE id = ?",
                                 [(row[2],) for row in with_file])
        self._count -= len(rows)
        self._bytes -= sum(row[0] for row in rows)
        return rows

    def release(self, first: int, last: int) -> list[tuple[int, str, float]]:
        """Custody released for IDs first..last: drop the bytes of those sent with custody.
        The (ID, next hop, retransmit_at) of each released: what fast retransmission goes by."""
        rows = self._to_tombstone(
            f"id BETWEEN ? AND ? AND state IN ({State.PENDING}, {State.IN_FLIGHT}) "
            "AND retransmit_at IS NOT NULL",
            (first, last),
        )
        return [(row[2], row[3], row[4]) for row in rows]

    def finish(self, bundle_id: int, state: State) -> bool:
        """Turn a bundle that is in `state` into a tombstone; whether it was."""
        return len(self._to_tombstone("id = ? AND state = ?", (bundle_id, int(state)))) == 1

    def finish_many(self, bundle_ids: list[int], state: State) -> list[int]:
        """finish() for many bundles in one statement a batch; the IDs that were in `state`."""
        done = []
        for start in range(0, len(bundle_ids), _ID_BATCH):
            batch = bundle_ids[start : start + _ID_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._to_tombstone(f"state = ? AND id IN ({marks})", (int(state), *batch))
            done.extend(row[2] for row in rows)
        return done

    def purge_expired(self, now: float, limit: int) -> list[StoredBundle]:
        """Delete up to `limit` rows whose lifetime ended by `now`; the live ones deleted."""
        db = self._write()
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE id IN (SELECT id FROM bundles "
            "WHERE expires <= ? ORDER BY expires LIMIT ?)",
            (now, limit),
        ).fetchall()
        ids = [(row[0],) for row in rows]
        db.executemany("DELETE FROM bundles WHERE id = ?", ids)
        db.executemany("DELETE FROM payloads WHERE id = ?", ids)
        live = [self._record(row) for row in rows if row[2] != State.DONE]
        self._drop_files(row[12] for row in rows if row[2] != State.DONE)
        self._count -= len(live)
        self._bytes -= sum(b.size for b in live)
        return live

    # --- payload files ----------------------------------------------------------------------

    def spool_path(self) -> Path:
        """A new path in the payload directory for a large payload file being written (the
        same file system as its final place, so adopting it is a rename)."""
        self.payload_dir.mkdir(mode=0o700, exist_ok=True)
        return self.payload_dir / f"{secrets.token_hex(8)}{_SPOOL_SUFFIX}"

    def _adopt(self, file: Path, bundle_id: int) -> str:
        """Make a spooled payload file row `bundle_id`'s, durably: fsync it, rename it, fsync
        the directory. Its name in the payload directory."""
        name = f"{bundle_id}.payload"
        try:
            with open(file, "rb") as f:
                os.fsync(f.fileno())
            os.replace(file, self.payload_dir / name)
            _fsync_dir(self.payload_dir)
        except OSError as exc:
            raise StoreError(f"cannot store payload file {file}: {exc}") from exc
        return name

    def _bundle_file(self, data: bytes, bundle_id: int) -> str:
        """Write a whole bundle as row `bundle_id`'s file (fsynced under synchronous=FULL, its
        directory at the next commit); its name in the payload directory."""
        name = f"{bundle_id}{_BUNDLE_SUFFIX}"
        try:
            self.payload_dir.mkdir(mode=0o700, exist_ok=True)
            with open(self.payload_dir / name, "wb") as f:
                f.write(data)
                if self._full:
                    os.fsync(f.fileno())
        except OSError as exc:
            raise StoreError(f"cannot store bundle file {name}: {exc}") from exc
        self._unsynced_dir |= self._full
        return name

    def _doom(self, names: Iterable[str | None]) -> None:
        self._doomed.extend(self.payload_dir / name for name in names if name is not None)

    def _drop_files(self, names: Iterable[str | None]) -> None:
        """The bytes of rows no longer live: a segment reference is released, a file doomed."""
        self._doom(name for name in names if name is not None and not self._segments.release(name))

    def _record(self, row: tuple) -> StoredBundle:
        return StoredBundle.from_row(row, self.payload_dir, self._segments)

    def _compact(self) -> None:
        """Copy the live bundles of a mostly dead segment to the active one (at most one
        segment a commit), so that a few long-lived bundles do not keep it on disk."""
        number = self._segments.sparse()
        if number is None:
            return
        rows = self._db.execute(
            f"SELECT id, file FROM bundles WHERE {_LIVE} AND file LIKE ?", (f"{number}.seg:%",)
        ).fetchall()
        try:
            moved = [(self._segments.append(self._segments.read(ref, row_id)), row_id)
                     for row_id, ref in rows]
        except StoreError:
            self._segments.stuck(number)  # its damaged bundle fails when read, not each commit
            return
        for _, ref in rows:
            self._segments.release(ref)
        self._write().executemany("UPDATE bundles SET file = ? WHERE id = ?", moved)

    def _remove_orphan_files(self) -> list[str]:
        """Delete payload files no live row names: spools and files a crash left behind. The
        names the live rows hold."""
        rows = self._db.execute(f"SELECT file FROM bundles WHERE file IS NOT NULL AND {_LIVE}")
        named = [row[0] for row in rows]
        if not self.payload_dir.is_dir():
            return named
        keep = set(named) | {segment_of(name) for name in named}
        for entry in self.payload_dir.iterdir():
            if entry.name not in keep:
                entry.unlink(missing_ok=True)
        return named

    # --- small persistent values ------------------------------------------------------------

    def get_meta(self, name: str, default: object = None) -> object:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, name: str, value: object) -> None:
        self._write().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def _check_schema(self) -> None:
        version = self.get_meta("schema")
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            return
        if isinstance(version, int) and version in MIGRATIONS:
            self._db.execute("BEGIN IMMEDIATE")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement)
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
            self._db.execute("COMMIT")
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {version}, this code reads {SCHEMA_VERSION}"
            )

    # --- figures ----------------------------------------------------------------------------

    def count_by_state(self) -> dict[State, tuple[int, int]]:
        """Live bundles and their bytes, per state (tombstones not counted)."""
        rows = self._db.execute(
            f"SELECT state, COUNT(*), TOTAL(size) FROM bundles WHERE {_LIVE} GROUP BY state"
        )
        return {State(state): (count, int(size)) for state, count, size in rows}

    def listing(self, limit: int) -> list[StoredBundle]:
        """Up to `limit` live bundles, oldest ID first, without their bytes (for people)."""
        columns = _COLUMNS.replace(", data, file", ", NULL, NULL")
        rows = self._db.execute(
            f"SELECT {columns} FROM bundles WHERE {_LIVE} ORDER BY id LIMIT ?", (limit,)
        )
        return [self._record(row) for row in rows]

    @property
    def bundle_count(self) -> int:
        """Live bundles (tombstones not counted): what the bundle quota limits."""
        return self._count

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def integrity_check(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
