"""Small bundles' bytes in append-only segment files beside the database (dtn/store/segments.py):
written before the rows that name them, checked when read back, deleted once dead, compacted
when a few long-lived bundles would keep a segment on disk."""

from __future__ import annotations

import errno
import gc
import os

import pytest

from dtn.store import BundleStore, DuplicateBundle, NewBundle, State, StoreError, segments


def record(n: int, data: bytes, expires: float = 1e9) -> NewBundle:
    return NewBundle(f"ipn:1.0/{n}.0", data, State.PENDING, float(n), expires, 0.0, next_hop="b")


def segment_files(store: BundleStore) -> list[str]:
    return sorted(p.name for p in store.payload_dir.glob("*.seg"))


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_small_bundles_live_in_a_segment_not_in_sqlite(tmp_path, synchronous):
    datas = [os.urandom(100 + i) for i in range(20)]
    store = BundleStore(tmp_path / "s.db", synchronous=synchronous)
    ids = store.add_many([record(i, d) for i, d in enumerate(datas)])
    assert store.get(ids[3]).data == datas[3]  # readable before the commit wrote it
    store.commit()
    assert store._db.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 0
    assert segment_files(store) == ["1.seg"]
    assert (store.payload_dir / "1.seg").stat().st_size == sum(len(d) for d in datas)
    store.close()
    store = BundleStore(tmp_path / "s.db", synchronous=synchronous)
    assert [b.data for b in store.due("b", 100)] == datas
    store.add_many([record(99, b"after the reopen")])
    store.commit()
    assert segment_files(store) == ["1.seg", "2.seg"]  # a reopened store appends to a new one
    assert store.get(ids[-1] + 1).data == b"after the reopen"


def test_uncommitted_bytes_named_by_no_row_are_dropped_at_open(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    (kept,) = store.add_many([record(1, b"kept")])
    store.commit()
    store.add_many([record(2, b"lost in the crash")])
    store._segments.flush()  # written, then the process dies before the row's commit
    del store
    gc.collect()
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    assert store.get(kept).data == b"kept"
    assert store.known("ipn:1.0/2.0") is None
    (again,) = store.add_many([record(2, b"sent again")])
    store.commit()
    assert store.get(again).data == b"sent again"


def test_damaged_bytes_are_a_store_error_and_others_still_read(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    first, second = store.add_many([record(1, b"a" * 50), record(2, b"b" * 50)])
    store.commit()
    with open(store.payload_dir / "1.seg", "r+b") as f:
        f.seek(10)
        f.write(b"X")
    with pytest.raises(StoreError, match=f"bundle row {first}: .* damaged or missing"):
        store.get(first)
    assert store.get(second).data == b"b" * 50
    os.truncate(store.payload_dir / "1.seg", 60)  # as a power loss under NORMAL may leave it
    with pytest.raises(StoreError, match=f"bundle row {second}: .* damaged or missing"):
        store.get(second)


def test_a_duplicate_in_a_batch_stores_none_of_its_bytes(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    store.add_many([record(1, b"one")])
    with pytest.raises(DuplicateBundle):
        store.add_many([record(2, b"two"), record(1, b"one again")])
    (third,) = store.add_many([record(3, b"three")])
    store.commit()
    assert store.get(third).data == b"three"
    assert (store.payload_dir / "1.seg").stat().st_size == len(b"one" + b"three")


def test_a_dead_sealed_segment_is_deleted_by_the_commit_that_ends_its_last_bundle(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL", segment_bytes=1000)
    first = store.add_many([record(i, bytes(300)) for i in range(4)])  # 1200 B: sealed
    store.commit()
    second = store.add_many([record(10 + i, bytes(300)) for i in range(2)])
    store.commit()
    assert segment_files(store) == ["1.seg", "2.seg"]
    assert store.finish_many(first[:3], State.PENDING) == first[:3]
    store.commit()
    assert segment_files(store) == ["1.seg", "2.seg"]  # one of its bundles is still live
    assert store.finish(first[3], State.PENDING)
    assert segment_files(store) == ["1.seg", "2.seg"]  # not before the commit
    store.commit()
    assert segment_files(store) == ["2.seg"]
    assert [b.data for b in store.load(second)] == [bytes(300)] * 2
    assert store.get(first[0]).data is None  # a tombstone has no bytes


def test_purged_bundles_release_their_bytes(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL", segment_bytes=1000)
    store.add_many([record(i, bytes(600), expires=10.0) for i in range(2)])
    store.commit()
    store.add_many([record(9, bytes(10))])
    store.commit()
    assert len(store.purge_expired(now=20.0, limit=10)) == 2
    store.commit()
    assert segment_files(store) == ["2.seg"]


def test_long_lived_bundles_are_compacted_so_dead_segments_go(tmp_path):
    """Every tenth bundle stays; the rest are delivered. Without compaction each segment would
    stay on disk for its one live bundle in ten."""
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL", segment_bytes=10_000)
    kept: dict[int, bytes] = {}
    for batch in range(100):
        datas = [os.urandom(500) for _ in range(10)]
        ids = store.add_many([record(batch * 10 + i, d) for i, d in enumerate(datas)])
        store.commit()
        kept[ids[0]] = datas[0]
        store.finish_many(ids[1:], State.PENDING)
        store.commit()
    live_bytes = sum(len(d) for d in kept.values())
    on_disk = sum(p.stat().st_size for p in store.payload_dir.glob("*.seg"))
    assert on_disk < 2 * live_bytes + 3 * 10_000, (on_disk, live_bytes)
    assert {b.id: b.data for b in store.load(kept)} == kept
    store.close()
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL", segment_bytes=10_000)
    assert {b.id: b.data for b in store.load(kept)} == kept
    assert store.integrity_check() == "ok"


def test_an_older_stores_payload_rows_are_read_and_dropped(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    (old,) = store.add_many([record(1, b"as schema 3 kept it")])
    store.commit()
    ref = store._db.execute("SELECT file FROM bundles WHERE id = ?", (old,)).fetchone()[0]
    store._db.execute("UPDATE bundles SET file = NULL WHERE id = ?", (old,))
    store._db.execute("INSERT INTO payloads VALUES (?, ?)", (old, b"as schema 3 kept it"))
    assert ref.startswith("1.seg:")
    store.close()
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    assert store.get(old).data == b"as schema 3 kept it"
    assert store.finish(old, State.PENDING)
    store.commit()
    assert store._db.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 0


def test_a_segment_write_that_fails_fails_the_commit_and_later_commits_work(tmp_path,
                                                                            monkeypatch):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    (kept,) = store.add_many([record(1, b"kept")])
    store.commit()
    store.add_many([record(2, b"doomed by a full disk")])

    def full_disk(fd: int, pieces: list[bytes]) -> None:  # half of it lands, then ENOSPC
        os.write(fd, pieces[0][:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments, "_write_all", full_disk)
    with pytest.raises(StoreError, match="commit .* failed.*No space left"):
        store.commit()
    monkeypatch.undo()
    assert store.known("ipn:1.0/2.0") is None
    (again,) = store.add_many([record(2, b"stored now")])
    store.commit()
    assert store.get(again).data == b"stored now"
    assert store.get(kept).data == b"kept"
    assert segment_files(store) == ["1.seg", "2.seg"]  # the torn one is sealed as it is


def test_the_active_segment_starts_again_empty_once_every_bundle_in_it_ended(tmp_path):
    store = BundleStore(tmp_path / "s.db", synchronous="NORMAL")
    ids = store.add_many([record(i, bytes(1000)) for i in range(5)])
    store.commit()
    store.finish_many(ids[:4], State.PENDING)
    store.commit()
    assert (store.payload_dir / "1.seg").stat().st_size == 5000  # one still live
    store.finish(ids[4], State.PENDING)
    store.commit()
    assert (store.payload_dir / "1.seg").stat().st_size == 0
    (again,) = store.add_many([record(9, b"from offset 0")])
    store.commit()
    assert store.get(again).data == b"from offset 0"
    assert (store.payload_dir / "1.seg").stat().st_size == len(b"from offset 0")
