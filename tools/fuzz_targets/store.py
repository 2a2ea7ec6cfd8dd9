"""The bundle store's readers on corrupted values of a real SQLite file.

A store is filled once with real bundles in every state. An input is a mode byte, then edits,
each (row, column, value kind, length, value bytes): a column of a bundles row, or a meta value,
set to NULL, an integer, a real, a text or a blob, as a damaged or hand-edited file could hold.
Mode bit 0 clear: the edits go into an open transaction on the live store, every reader runs,
and they are rolled back. Set: they are committed to a copy of the file, and the store is
opened on it first (what the constructor reads from meta). Either way every stored bundle read
back is decoded, as the agent does. StoreError and BundleError are the typed errors; a record
whose fields are not of their declared types is a crash too, as the agent would trip on it."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import struct
import tempfile
from dataclasses import fields
from functools import cache
from pathlib import Path

from dtn.bundle import Bundle, BundleError
from dtn.store import BundleStore, NewBundle, State, StoredBundle, StoreError

from . import _seeds

_COLUMNS = ("id", "key", "state", "next_hop", "priority", "created", "expires", "received",
            "size", "custodian", "retransmit_at", "adu", "frag_offset", "frag_length", "data",
            "file")
_META = ("schema", "next_id", "live_totals")
_TABLE = {"data": "payloads"}  # a bundle's bytes are a row of their own table, same id
_ROWS = 8
_HOPS = ("mars", "relay")
# The types each StoredBundle field may hold (int for float columns: SQLite gives back 5.0 as 5
# only when it was stored as an integer, and the agent's arithmetic takes both).
_FIELD_TYPES = {"id": (int,), "key": (str,), "state": (State,), "next_hop": (str, type(None)),
                "priority": (int,), "created": (float, int), "expires": (float, int),
                "received": (float, int), "size": (int,), "custodian": (str, type(None)),
                "retransmit_at": (float, int, type(None)), "data": (bytes, type(None)),
                "file": (Path, type(None))}


@cache
def _template() -> Path:
    """A store file with _ROWS bundles: queued, in flight, deliverable, fragments, a tombstone."""
    directory = Path(tempfile.mkdtemp(prefix="dtn-fuzz-store-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "template.db"
    store = BundleStore(path, synchronous="NORMAL")
    bundles = sorted(_seeds.valid_bundles(), key=len)[:_ROWS]
    states = (State.PENDING, State.PENDING, State.IN_FLIGHT, State.DELIVERABLE, State.FRAGMENT,
              State.FRAGMENT, State.PENDING, State.DELIVERABLE)
    for number, (data, state) in enumerate(zip(bundles, states, strict=True)):
        fragment = state == State.FRAGMENT
        store.add(NewBundle(f"ipn:1.1/{number}.0", data, state, created=1000.0 + number,
                            expires=90_000.0, received=1000.0 + number,
                            next_hop=_HOPS[number % 2] if state != State.DELIVERABLE else None,
                            custodian="ipn:3.0" if state == State.IN_FLIGHT else None,
                            adu="ipn:1.1/4.0" if fragment else None,
                            frag_offset=(number - 4) * 10 if fragment else None,
                            frag_length=10 if fragment else None))
    store.commit()
    store.finish(1, State.DONE)
    store.commit()
    store.close()
    return path


@cache
def _live_store() -> BundleStore:
    path = _template().with_name("live.db")
    shutil.copyfile(_template(), path)
    return BundleStore(path, synchronous="NORMAL")


def _edits(data: bytes) -> list[tuple[int, int, object]]:
    """(row id, column index, value) triples; column indexes past the bundles columns are meta
    names."""
    edits, at = [], 1
    while at + 4 <= len(data):
        row, column, kind, length = data[at : at + 4]
        value = data[at + 4 : at + 4 + length]
        at += 4 + length
        kind %= 5
        if kind == 0:
            decoded: object = None
        elif kind == 1:
            decoded = int.from_bytes(value[:8].ljust(8, b"\0"), "big", signed=True)
        elif kind == 2:
            decoded = struct.unpack(">d", value[:8].ljust(8, b"\0"))[0]
        elif kind == 3:
            decoded = value.decode("utf-8", "replace")
        else:
            decoded = bytes(value)
        edits.append((row % (_ROWS + 1), column % (len(_COLUMNS) + len(_META)), decoded))
    return edits


def _apply(db: sqlite3.Connection, edits: list[tuple[int, int, object]]) -> None:
    for row, column, value in edits:
        try:
            if column < len(_COLUMNS):
                name = _COLUMNS[column]
                if name == "data" and value is None:  # NOT NULL there: a live row without bytes
                    db.execute("DELETE FROM payloads WHERE id = ?", (row,))
                    continue
                db.execute(f"UPDATE {_TABLE.get(name, 'bundles')} SET {name} = ? WHERE id = ?",
                           (value, row))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (_META[column - len(_COLUMNS)], value))
        except sqlite3.IntegrityError:  # a duplicate id or key, NULL in a NOT NULL column
            continue


def _check_record(record: StoredBundle) -> None:
    for field in fields(StoredBundle):
        value = getattr(record, field.name)
        if not isinstance(value, _FIELD_TYPES[field.name]):
            raise AssertionError(f"store handed out {field.name}={value!r} of record {record.id}")
    if record.data is not None:
        with contextlib.suppress(BundleError):
            Bundle.decode(record.data)


def _read_everything(store: BundleStore) -> None:
    records = [store.get(number) for number in range(_ROWS + 1)]
    records += store.load(range(_ROWS + 1))
    for hop in _HOPS:
        records += store.due(hop, 100)
        store.next_retransmit(hop)
    records += store.unrouted(0, 100) + store.deliverable(0, 100) + store.listing(100)
    for record in records:
        if record is not None:
            _check_record(record)
            store.known(record.key)
    store.fragment_spans("ipn:1.1/4.0")
    store.count_by_state()
    store.next_expiry()


def _reopened(edits: list[tuple[int, int, object]]) -> None:
    path = _template().with_name("reopened.db")
    shutil.copyfile(_template(), path)
    with sqlite3.connect(path) as db:
        _apply(db, edits)
    db.close()
    store = BundleStore(path, synchronous="NORMAL")
    try:
        _read_everything(store)
    finally:
        store.close()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    edits = _edits(data)
    try:
        if data[0] & 1:
            _reopened(edits)
            return
        store = _live_store()
        db = store._db  # the edits go around the store, as damage would
        db.execute("BEGIN")
        try:
            _apply(db, edits)
            _read_everything(store)
        finally:
            db.execute("ROLLBACK")
    except (StoreError, BundleError):
        return


def seeds() -> list[bytes]:
    def edit(row: int, column: str | int, kind: int, value: bytes) -> bytes:
        index = _COLUMNS.index(column) if isinstance(column, str) else column
        return bytes([row, index, kind, len(value)]) + value

    meta = len(_COLUMNS)
    bundle = sorted(_seeds.valid_bundles(), key=len)[-1][:255]
    return [
        b"\0",
        b"\1",
        b"\0" + edit(2, "state", 1, (7).to_bytes(8, "big")),
        b"\0" + edit(3, "data", 4, bundle[:200]),
        b"\0" + edit(4, "priority", 3, b"high") + edit(5, "created", 4, b"\x01\x02"),
        b"\0" + edit(6, "key", 4, b"ipn:1.1/6.0") + edit(6, "next_hop", 1, bytes(8)),
        b"\1" + edit(0, meta, 3, b"2") + edit(0, meta + 1, 3, b"x"),
        b"\1" + edit(0, meta + 2, 3, b"3 -5") + edit(7, "size", 2, struct.pack(">d", 1e300)),
        b"\1" + edit(0, meta + 1, 2, struct.pack(">d", float("nan"))),
    ]
