"""The store's SQLite schema and the bundle states it records.

One table holds every bundle this node has accepted, from acceptance until its lifetime ends: the
live ones, and, after delivery or a custody release, a tombstone that lets the agent recognise a
retransmitted duplicate until the bundle would have expired anyway. A live bundle's encoded bytes
are never in `bundles`: SQLite rewrites a whole row (blob and overflow pages included) on any
UPDATE, so with the bytes there every state change of a 28 KB fragment wrote 29 KB of WAL. A
small bundle's bytes are in a segment file its `file` column names (dtn/store/segments.py), a
larger one's in a file of its own. Each index answers one question the agent asks:

- ``due``: what is queued for a neighbour, best priority then oldest first (partial: PENDING);
- ``expiry``: what expires next (every row, tombstones included, so they are purged too);
- ``custody``: what waits for a custody signal, by neighbour and retransmission time;
- ``deliverable`` / ``adu``: what waits for the application, and the fragments of one ADU.

A large ADU (docs/store.md, Large payloads) keeps its payload in a file beside the database: its
`payloads` row is the bundle with an empty payload block, and `file` names the payload's file.
(A store made before schema 4 also kept small bundles in `payloads`.)
"""

from __future__ import annotations

from enum import IntEnum

SCHEMA_VERSION = 4
# What each older schema needs to become the next, run in order from its version (after DDL,
# which creates the tables an older schema lacks).
MIGRATIONS = {
    1: ("ALTER TABLE bundles ADD COLUMN file TEXT",),
    2: (
        "INSERT INTO payloads (id, data) SELECT id, data FROM bundles WHERE data IS NOT NULL",
        "ALTER TABLE bundles DROP COLUMN data",
    ),
    3: (),  # 4: `file` may name a segment of small bundles (dtn/store/segments.py)
}


class State(IntEnum):
    PENDING = 0  # queued for `next_hop` (NULL: no route known yet)
    IN_FLIGHT = 1  # sent with custody requested; waits for the next custodian's signal
    DELIVERABLE = 2  # addressed to this node; waits for the application to take it
    FRAGMENT = 3  # a fragment addressed to this node; waits for the rest of its ADU
    DONE = 4  # tombstone: delivered, released or forwarded; kept to suppress duplicates


LIVE_STATES = (State.PENDING, State.IN_FLIGHT, State.DELIVERABLE, State.FRAGMENT)

DDL = f"""
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY,      -- assigned by the store, never reused; also our custody ID
    key TEXT NOT NULL UNIQUE,    -- bundle ID text (source/creation.sequence[#offset+length])
    state INTEGER NOT NULL,
    next_hop TEXT,               -- neighbour name
    priority INTEGER NOT NULL,   -- larger goes first
    created REAL NOT NULL,       -- creation, mission Unix seconds (age order)
    expires REAL NOT NULL,       -- end of lifetime, mission Unix seconds
    received REAL NOT NULL,      -- when this node accepted it (bundle age bookkeeping)
    size INTEGER NOT NULL,       -- bytes counted against the quota
    custodian TEXT,              -- previous custodian's node ID, when custody was transferred
    retransmit_at REAL,          -- link-clock time of the custody retransmission; set once sent
    adu TEXT,                    -- for a fragment awaiting reassembly: its ADU's bundle ID
    frag_offset INTEGER,
    frag_length INTEGER,
    file TEXT                    -- where the bytes are: a segment reference or a file name
);
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY,      -- the bundle's id; no row for a tombstone
    data BLOB NOT NULL           -- a large ADU's bundle without its payload
);
CREATE INDEX IF NOT EXISTS due ON bundles (next_hop, priority DESC, created)
    WHERE state = {State.PENDING};
CREATE INDEX IF NOT EXISTS expiry ON bundles (expires);
CREATE INDEX IF NOT EXISTS custody ON bundles (next_hop, retransmit_at)
    WHERE state = {State.IN_FLIGHT};
CREATE INDEX IF NOT EXISTS deliverable ON bundles (id) WHERE state = {State.DELIVERABLE};
CREATE INDEX IF NOT EXISTS adu ON bundles (adu) WHERE adu IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""
