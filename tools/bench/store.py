"""The bundle store: durable accepts per second, due-bundle selection and resident memory with
1,000,000 bundles stored.

1. Accepts: 1 KiB bundles committed in groups (synchronous=FULL and NORMAL), through the store
   alone and through the whole agent (decode, custody block, store, commit), beside one commit
   per bundle (the naive peer) measured in the same run.
2. Selection: `due(neighbour, 100)` among 1,000,000 stored over 10 neighbours; also the next
   expiry and the next custody retransmission.
3. Memory: VmRSS of a fresh process that opens a store and runs the agent's queries, with
   1,000,000 stored and with 10,000 stored.

The 1,000,000-bundle database (~1.2 GB) is built once in a temporary directory and deleted at
the end. Run: python -m tools.bench.store [--rows N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dtn.agent import Agent, Link, Route, Router
from dtn.agent.custody import CUSTODY_BLOCK_TYPE, CustodyBlock
from dtn.bundle import EID, Bundle, CanonicalBlock
from dtn.store import BundleStore, NewBundle, State

T0 = 1_000_000_000.0
NEIGHBOURS = [f"n{i}" for i in range(10)]
GROUP = 1000  # bundles per commit


def one_kib_bundle(sequence: int, source: str = "ipn:7.1") -> bytes:
    bundle = Bundle.create(
        source, "ipn:2.1", bytes(1024), creation_time=817_000_000_000, sequence=sequence
    )
    return bundle.encode()


def records(start: int, count: int, data: bytes, rng: random.Random) -> list[NewBundle]:
    """Bundles as one source makes them: one lifetime (1 day), so expiry follows creation;
    spread over the neighbours and three priorities."""
    return [
        NewBundle(
            f"ipn:7.1/817000000000.{n}",
            data,
            State.PENDING,
            T0 + n * 1e-3,
            T0 + n * 1e-3 + 86_400,
            T0,
            next_hop=rng.choice(NEIGHBOURS),
            priority=rng.randrange(3),
        )
        for n in range(start, start + count)
    ]


def store_accepts(directory: Path, synchronous: str, total: int) -> float:
    store = BundleStore(directory / f"accepts-{synchronous}.db", synchronous=synchronous)
    data, rng = one_kib_bundle(0), random.Random(1)
    batches = [records(i, GROUP, data, rng) for i in range(0, total, GROUP)]
    start = time.perf_counter()
    for batch in batches:
        store.add_many(batch)
        store.commit()
    elapsed = time.perf_counter() - start
    store.close()
    return total / elapsed


def naive_accepts(directory: Path, total: int) -> float:
    """One transaction (one fsync) per bundle."""
    store = BundleStore(directory / "naive.db", synchronous="FULL")
    batch = records(0, total, one_kib_bundle(0), random.Random(2))
    start = time.perf_counter()
    for record in batch:
        store.add(record)
        store.commit()
    elapsed = time.perf_counter() - start
    store.close()
    return total / elapsed


def agent_accepts(directory: Path, synchronous: str, total: int) -> float:
    """Bundles arriving with a custody block: decoded, checked, stored, committed per group."""
    store = BundleStore(directory / f"agent-{synchronous}.db", synchronous=synchronous)
    agent = Agent("ipn:2.0", store, Router([Route("ipn:1.*", ("earth",))], [Link("earth")]))
    wire = []
    for n in range(total):
        bundle = Bundle.create(
            "ipn:1.1", "ipn:2.1", bytes(1024), creation_time=817_000_000_000, sequence=n
        )
        bundle.insert_block(
            CanonicalBlock(
                CUSTODY_BLOCK_TYPE, 2, CustodyBlock(n + 1, EID.parse("ipn:1.0")).encode()
            )
        )
        wire.append(bundle.encode())
    start = time.perf_counter()
    for i in range(0, total, GROUP):
        agent.receive_many(wire[i : i + GROUP], "earth", T0)
        agent.next_actions()
    elapsed = time.perf_counter() - start
    assert agent.counters["accepted"] == total, agent.counters
    store.close()
    return total / elapsed


def build(path: Path, rows: int) -> float:
    store = BundleStore(path, synchronous="NORMAL")
    data, rng = one_kib_bundle(0), random.Random(3)
    start = time.perf_counter()
    for i in range(0, rows, 10_000):
        store.add_many(records(i, min(10_000, rows - i), data, rng))
        if i % 100_000 == 0:  # a few in flight, as a custodian would have
            for neighbour in NEIGHBOURS:
                for row in store.due(neighbour, 5):
                    store.mark_in_flight(row.id, rng.random() * 1000)
        store.commit()
    store.close()
    return time.perf_counter() - start


def selection_ms(path: Path) -> dict[str, float]:
    store = BundleStore(path)
    timings: dict[str, list[float]] = {"due(100)": [], "next_expiry": [], "next_retransmit": []}
    for i in range(300):
        neighbour = NEIGHBOURS[i % len(NEIGHBOURS)]
        for name, query in (
            ("due(100)", lambda n=neighbour: store.due(n, 100)),
            ("next_expiry", store.next_expiry),
            ("next_retransmit", lambda n=neighbour: store.next_retransmit(n)),
        ):
            start = time.perf_counter()
            result = query()
            timings[name].append((time.perf_counter() - start) * 1000)
            assert result is not None
    store.close()
    return {
        f"{name} {stat}": round(fn(values), 3)
        for name, values in timings.items()
        for stat, fn in (("median", statistics.median), ("max", max))
    }


PROBE = """
import json, sys, time
from dtn.store import BundleStore
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
start = time.perf_counter()
store = BundleStore(sys.argv[1])
opened = time.perf_counter() - start
for i in range(2000):
    store.due(f"n{i % 10}", 100)
    store.next_expiry()
    store.next_retransmit(f"n{i % 10}")
print(json.dumps({"stored": store.bundle_count, "rss_kib": rss_kib(),
                  "open_s": round(opened, 2)}))
"""


def resident(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accepts", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dtn-bench-store-") as tmp:
        directory = Path(tmp)
        print("durable accepts of 1 KiB bundles, groups of", GROUP, "per commit:")
        naive = naive_accepts(directory, 500)
        for synchronous in ("FULL", "NORMAL"):
            store_rate = store_accepts(directory, synchronous, args.accepts)
            agent_rate = agent_accepts(directory, synchronous, args.accepts // 2)
            print(
                f"  synchronous={synchronous:6} store {store_rate:9,.0f}/s "
                f"({store_rate / naive:,.0f}x one commit per bundle)   "
                f"agent receive+custody {agent_rate:9,.0f}/s"
            )
        print(f"  one commit per bundle (FULL): {naive:,.0f}/s")
        big = directory / "million.db"
        print(
            f"building {args.rows:,} stored bundles: {build(big, args.rows):.1f} s, "
            f"{big.stat().st_size / 2**20:,.0f} MiB"
        )
        for name, value in selection_ms(big).items():
            print(f"  {name:24} {value:8.3f} ms")
        small = directory / "small.db"
        build(small, 10_000)
        large_probe, small_probe = resident(big), resident(small)
        for probe in (small_probe, large_probe):
            print(
                f"  resident memory with {probe['stored']:>9,} stored: "
                f"{probe['rss_kib'] / 1024:6.1f} MiB (open {probe['open_s']} s)"
            )
        print(
            f"  ratio {large_probe['rss_kib'] / small_probe['rss_kib']:.2f} for "
            f"{large_probe['stored'] / small_probe['stored']:.0f}x the bundles"
        )


if __name__ == "__main__":
    main()
