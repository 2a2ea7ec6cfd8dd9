"""The bundle store on a real SQLite file: grouped commits, the agent's queries, quotas, expiry,
and a writer killed with SIGKILL mid-batch."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from dtn.store import BundleStore, DuplicateBundle, NewBundle, Quota, State, StoreError, StoreFull
from dtn.store.schema import SCHEMA_VERSION
from dtn.store.store import FILE_ABOVE


def record(
    n: int,
    *,
    state: State = State.PENDING,
    next_hop: str | None = "b",
    priority: int = 1,
    created: float = 0.0,
    expires: float = 1e9,
    size: int = 100,
) -> NewBundle:
    return NewBundle(
        f"ipn:1.0/{n}.0",
        bytes(size),
        state,
        created + n,
        expires,
        0.0,
        next_hop=next_hop,
        priority=priority,
    )


def test_committed_bundles_survive_a_reopen(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    ids = store.add_many([record(i) for i in range(10)])
    store.commit()
    store.close()
    store = BundleStore(tmp_path / "s.db")
    assert store.bundle_count == 10
    assert store.bytes_used == 1000
    assert store.get(ids[3]).key == "ipn:1.0/3.0"
    assert store.known("ipn:1.0/9.0") == (State.PENDING, None)


def test_uncommitted_bundles_vanish_with_a_dropped_store(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    store.add(record(1))
    store.commit()
    store.add(record(2))
    del store  # no close, no commit: a crash
    gc.collect()
    store = BundleStore(tmp_path / "s.db")
    assert store.known("ipn:1.0/1.0") is not None
    assert store.known("ipn:1.0/2.0") is None
    assert (store.bundle_count, store.bytes_used) == (1, 100)
    assert store.integrity_check() == "ok"


def test_ids_are_never_reused(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    first = store.add(record(1, expires=5.0))
    store.commit()
    store.purge_expired(10.0, 100)
    store.commit()
    store.close()
    store = BundleStore(tmp_path / "s.db")
    assert store.add(record(2)) == first + 1


def test_duplicate_key_is_refused_and_the_batch_is_atomic(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    store.add(record(1))
    with pytest.raises(DuplicateBundle):
        store.add_many([record(2), record(1)])
    assert store.known("ipn:1.0/2.0") is None
    assert store.bundle_count == 1


def test_due_selection_is_per_neighbour_by_priority_then_age(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    store.add_many(
        [
            record(1, priority=1),
            record(2, priority=2),
            record(3, priority=1),
            record(4, next_hop="c", priority=9),
            record(5, priority=2, created=-10),
        ]
    )
    assert [b.key for b in store.due("b", 10)] == [
        "ipn:1.0/5.0",
        "ipn:1.0/2.0",
        "ipn:1.0/1.0",
        "ipn:1.0/3.0",
    ]
    assert [b.key for b in store.due("b", 2)] == ["ipn:1.0/5.0", "ipn:1.0/2.0"]
    assert [b.key for b in store.due("c", 10)] == ["ipn:1.0/4.0"]


def test_due_selection_uses_the_partial_index(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM bundles WHERE next_hop = 'b' AND state = 0 "
        "ORDER BY priority DESC, created LIMIT 10"
    ).fetchall()
    detail = " ".join(row[-1] for row in plan)
    assert "USING INDEX due" in detail and "TEMP B-TREE" not in detail


def test_bundle_quota_refuses_new_and_keeps_old(tmp_path):
    store = BundleStore(tmp_path / "s.db", quota=Quota(max_bundles=3))
    store.add_many([record(i) for i in range(3)])
    with pytest.raises(StoreFull) as full:
        store.add(record(4))
    assert full.value.limit == "bundles"
    assert store.bundle_count == 3
    assert all(store.known(f"ipn:1.0/{i}.0") for i in range(3))


def test_byte_quota_counts_live_bundles_only(tmp_path):
    store = BundleStore(tmp_path / "s.db", quota=Quota(max_bytes=250))
    ids = store.add_many([record(1), record(2)])
    with pytest.raises(StoreFull, match="250 bytes") as full:
        store.add(record(3))
    assert full.value.limit == "bytes"
    assert store.finish(ids[0], State.PENDING)  # a tombstone frees its bytes
    store.add(record(3))
    assert store.bytes_used == 200
    store.add_many([record(4)], enforce_quota=False)
    assert store.bytes_used == 300


def test_custody_release_touches_only_bundles_sent_with_custody(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    ids = store.add_many([record(i) for i in range(5)])
    for bundle_id in ids[:3]:
        store.mark_in_flight(bundle_id, retransmit_at=100.0)
    assert len(store.release(ids[0], ids[-1])) == 3
    assert [store.get(i).state for i in ids] == [State.DONE] * 3 + [State.PENDING] * 2
    assert store.get(ids[0]).data is None
    assert store.release(ids[0], ids[-1]) == []  # idempotent
    assert store.bundle_count == 2


def test_a_tombstone_costs_the_wal_a_page_not_the_bundle(tmp_path):
    # Python's SQLite zeroes freed pages (SECURE_DELETE): releasing a large bundle then wrote
    # its whole size to the WAL a second time.
    store = BundleStore(tmp_path / "s.db")
    ids = store.add_many([record(i, size=28_000) for i in range(20)])
    for bundle_id in ids:
        store.mark_in_flight(bundle_id, retransmit_at=100.0)
    store.commit()
    wal = tmp_path / "s.db-wal"
    before = wal.stat().st_size
    assert len(store.release(ids[0], ids[-1])) == 20
    store.commit()
    assert (wal.stat().st_size - before) / 20 < 28_000 / 4


def test_custody_timer_queries(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    ids = store.add_many([record(i) for i in range(3)])
    store.mark_in_flight(ids[0], 50.0)
    store.mark_in_flight(ids[1], 20.0)
    assert store.next_retransmit("b") == 20.0
    assert store.next_retransmit("c") is None
    assert store.requeue_overdue("b", 30.0) == [ids[1]]
    assert [b.id for b in store.due("b", 10)] == [ids[1], ids[2]]
    assert store.release(ids[1], ids[1]) == [(ids[1], "b", 20.0)]  # a late signal releases it


def test_purge_removes_expired_rows_and_returns_the_live_ones(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    ids = store.add_many([record(1, expires=10), record(2, expires=20), record(3, expires=30)])
    store.finish(ids[0], State.PENDING)
    assert store.next_expiry() == 10
    purged = store.purge_expired(25, 100)
    assert [b.key for b in purged] == ["ipn:1.0/2.0"]
    assert store.next_expiry() == 30
    assert store.known("ipn:1.0/1.0") is None
    assert store.bundle_count == 1


def test_fragments_and_deliverables(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    fragments = [
        NewBundle(
            f"ipn:1.0/1.0#{o}+10",
            b"x",
            State.FRAGMENT,
            0,
            99,
            0,
            adu="ipn:1.0/1.0",
            frag_offset=o,
            frag_length=10,
        )
        for o in (0, 10)
    ]
    store.add_many(fragments)
    deliverable = store.add(record(7, state=State.DELIVERABLE, next_hop=None))
    assert sorted(o for _, o, _ in store.fragment_spans("ipn:1.0/1.0")) == [0, 10]
    assert [b.id for b in store.deliverable(0, 10)] == [deliverable]


def test_meta_values_persist(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    store.set_meta("link_clock:b", 12.5)
    store.close()
    assert BundleStore(tmp_path / "s.db").get_meta("link_clock:b") == 12.5


def test_not_a_store_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open bundle store"):
        BundleStore(path)
    with pytest.raises(ValueError, match="synchronous"):
        BundleStore(tmp_path / "s.db", synchronous="OFF")


def test_a_store_that_fails_to_open_leaves_no_connection_behind(tmp_path):
    path = tmp_path / "s.db"
    BundleStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', 'x')")
    db.close()
    gc.disable()  # the connection must close at once, not when the collector finds it
    try:
        with pytest.raises(StoreError, match="next_id"):
            BundleStore(path)
        open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    finally:
        gc.enable()
    assert not {str(path), f"{path}-wal"} & open_files


def test_other_schema_version_is_refused(tmp_path):
    BundleStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema 99"):
        BundleStore(tmp_path / "s.db")


def large(store: BundleStore, n: int, payload: bytes, **fields) -> NewBundle:
    """A large ADU's row: its payload written to a spool file of the store's."""
    spool = store.spool_path()
    spool.write_bytes(payload)
    return NewBundle(
        f"ipn:1.0/{n}.0",
        b"skeleton",
        State.DELIVERABLE,
        0.0,
        1e9,
        0.0,
        next_hop=None,
        file=spool,
        **fields,
    )


def test_a_large_payload_lives_in_a_file_beside_the_database(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    (bundle_id,) = store.add_many([large(store, 1, b"x" * 5000)])
    store.commit()
    store.close()
    store = BundleStore(tmp_path / "s.db")
    row = store.get(bundle_id)
    assert row.data == b"skeleton"
    assert row.file.parent == tmp_path / "s.db.payloads"
    assert row.file.read_bytes() == b"x" * 5000
    assert store.bytes_used == row.size == 5000 + len(b"skeleton")
    assert list(store.payload_dir.iterdir()) == [row.file]


@pytest.mark.parametrize("how", ["finish", "purge"])
def test_a_large_payload_file_goes_only_after_the_commit_that_drops_its_row(tmp_path, how):
    store = BundleStore(tmp_path / "s.db")
    (bundle_id,) = store.add_many(
        [
            large(
                store,
                1,
                b"x" * 5000,
            )
        ]
    )
    store.commit()
    file = store.get(bundle_id).file
    if how == "finish":
        assert store.finish(bundle_id, State.DELIVERABLE)
    else:
        assert [b.id for b in store.purge_expired(2e9, 10)] == [bundle_id]
    assert file.exists()  # a crash now must leave the row's payload
    store.commit()
    assert not file.exists()
    assert store.bytes_used == 0
    if how == "finish":
        assert store.get(bundle_id).file is None


def test_payload_files_no_committed_row_names_are_removed_at_open(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    (kept,) = store.add_many([large(store, 1, b"kept")])
    store.commit()
    store.add_many([large(store, 2, b"never committed")])  # adopted, then a crash
    stray = store.spool_path()
    stray.write_bytes(b"a spool being written")
    del store
    gc.collect()
    store = BundleStore(tmp_path / "s.db")
    assert [p.name for p in store.payload_dir.iterdir()] == [store.get(kept).file.name]
    assert store.known("ipn:1.0/2.0") is None


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_a_bundle_above_file_above_is_kept_whole_as_a_file(tmp_path, synchronous):
    big, small = os.urandom(FILE_ABOVE + 1), os.urandom(FILE_ABOVE)
    store = BundleStore(tmp_path / "s.db", synchronous=synchronous)
    ids = store.add_many([replace(record(1), data=big), replace(record(2), data=small)])
    store.commit()
    assert sorted(p.name for p in store.payload_dir.iterdir()) == [f"{ids[0]}.bundle", "1.seg"]
    assert [row.data for row in store.due("b", 10)] == [big, small]
    assert store.get(ids[0]).file is None  # whole: not a large ADU's separate payload
    assert store.bytes_used == len(big) + len(small)
    store.close()
    store = BundleStore(tmp_path / "s.db", synchronous=synchronous)
    assert store.get(ids[0]).data == big
    assert store.finish(ids[0], State.PENDING)
    assert (store.payload_dir / f"{ids[0]}.bundle").exists()  # until the commit drops the row
    store.commit()
    assert [p.name for p in store.payload_dir.iterdir()] == ["1.seg"]  # the small one's
    assert store.bytes_used == len(small)


def test_a_bundle_file_no_committed_row_names_is_removed_at_open(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    (kept,) = store.add_many([replace(record(1), data=bytes(FILE_ABOVE + 1))])
    store.commit()
    store.add_many([replace(record(2), data=bytes(FILE_ABOVE + 2))])  # written, then a crash
    del store
    gc.collect()
    store = BundleStore(tmp_path / "s.db")
    assert [p.name for p in store.payload_dir.iterdir()] == [f"{kept}.bundle"]
    assert store.known("ipn:1.0/2.0") is None
    assert store.get(kept).data == bytes(FILE_ABOVE + 1)


def test_a_missing_bundle_file_is_a_store_error_naming_the_row(tmp_path):
    store = BundleStore(tmp_path / "s.db")
    (bundle_id,) = store.add_many([replace(record(1), data=bytes(FILE_ABOVE + 1))])
    store.commit()
    (store.payload_dir / f"{bundle_id}.bundle").unlink()
    with pytest.raises(StoreError, match=f"bundle row {bundle_id}: cannot read its file"):
        store.get(bundle_id)


# The bundles table as schema 2 had it (schema 1 lacked `file`): the encoded bundle in `data`.
SCHEMA_2_DDL = """
CREATE TABLE bundles (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, state INTEGER NOT NULL, next_hop TEXT,
    priority INTEGER NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
    received REAL NOT NULL, size INTEGER NOT NULL, custodian TEXT, retransmit_at REAL,
    adu TEXT, frag_offset INTEGER, frag_length INTEGER, data BLOB, file TEXT
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_migrated(tmp_path, version):
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2_DDL if version == 2 else SCHEMA_2_DDL.replace(", file TEXT", ""))
    db.execute("INSERT INTO meta VALUES ('schema', ?)", (version,))
    db.execute(
        "INSERT INTO bundles (id, key, state, priority, created, expires, received, size, "
        "data) VALUES (1, 'ipn:1.0/1.0', 0, 1, 0, 1e9, 0, 3, x'010203')"
    )
    db.execute(  # a tombstone: no bytes
        "INSERT INTO bundles (id, key, state, priority, created, expires, received, size) "
        "VALUES (2, 'ipn:1.0/2.0', 4, 1, 0, 1e9, 0, 3)"
    )
    db.commit()
    db.close()
    store = BundleStore(path)
    assert store.get_meta("schema") == SCHEMA_VERSION
    assert store.get(1).data == b"\x01\x02\x03" and store.get(1).file is None
    assert store.get(2).data is None and store.known("ipn:1.0/2.0")[0] == State.DONE
    columns = [column[1] for column in store._db.execute("PRAGMA table_info(bundles)")]
    assert "data" not in columns and "file" in columns
    assert store.integrity_check() == "ok"


def test_a_state_change_writes_the_small_row_not_the_bundle(tmp_path):
    """The bytes have their own table: marking a 28 KB bundle in flight (a row that grows by
    a REAL) must not rewrite them into the WAL."""
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    ids = store.add_many([NewBundle(f"ipn:1.0/{i}.0", os.urandom(28_000), State.PENDING, 0.0,
                                    1e9, 0.0, next_hop="b") for i in range(20)])
    store.commit()
    wal = tmp_path / "s.db-wal"
    before = wal.stat().st_size
    for bundle_id in ids:
        store.mark_in_flight(bundle_id, 100.0)
    store.commit()
    assert wal.stat().st_size - before < 20 * 2 * 4096  # a page or two each, not 28 KB
    assert all(b.data is not None and len(b.data) == 28_000 for b in store.load(ids))


WRITER = textwrap.dedent("""
    import sys
    from dtn.store import BundleStore, NewBundle, State
    store = BundleStore(sys.argv[1])
    n = 0
    while True:
        batch = [NewBundle(f"ipn:1.0/{n + i}.0", bytes(1024), State.PENDING, 0.0, 1e12, 0.0,
                           next_hop="b") for i in range(500)]
        store.add_many(batch)
        store.commit()
        n += len(batch)
        print(n, flush=True)
""")


def test_writer_killed_mid_batch_keeps_every_acknowledged_bundle(tmp_path):
    path = tmp_path / "killed.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    acknowledged = 0
    try:
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 5000:
                break  # the writer is already filling its next batch
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    store = BundleStore(path)
    assert store.integrity_check() == "ok"
    assert store.bundle_count >= acknowledged and store.bundle_count % 500 == 0
    missing = [n for n in range(acknowledged) if store.known(f"ipn:1.0/{n}.0") is None]
    assert missing == []
    counted = sqlite3.connect(path).execute("SELECT COUNT(*), SUM(size) FROM bundles").fetchone()
    assert (store.bundle_count, store.bytes_used) == counted  # the saved totals are right
