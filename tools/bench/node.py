"""Node benchmark: real daemons and the emulator on 127.0.0.1.

(a) durable submissions/s through the API: 1 KiB bundles from concurrent AsyncClients to a node
    whose neighbour is not running (everything stays in its SQLite store, synchronous=FULL);
(b) end-to-end goodput through the emulator at wall-clock rates (time_scale = 1, light time
    20 ms), BER 1e-5, 1% loss: application bytes delivered per second over the link rate,
    1 KiB and 1 MB bundles, 6 Mbit/s and 267 Mbit/s.

    python -m tools.bench.node [--seconds 5] [--skip-goodput]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from dtn.client import AsyncClient
from dtn.scenario.pair import earth_mars, start

PARSE = {"6 Mbit/s": 6e6, "267 Mbit/s": 267e6}


async def _submit(path: str, clients: int, seconds: float, size: int) -> int:
    payload = os.urandom(size)
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        async with AsyncClient(path) as client:
            while time.perf_counter() < stop_at:
                await client.send("ipn:2.1", payload)
                done += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return done


def submissions(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # A light time of hours: no custody timer runs out while the peer is away.
        net, earth, _, _ = earth_mars(Path(folder), light_time="6h", log_level="warning")
        # durable across power loss, not only across a crash of the process
        earth.write_text(earth.read_text().replace('"NORMAL"', '"FULL"'))
        with net:
            net.node("earth", earth)
            net.wait_ready()
            for clients in (1, 16, 64):
                started = time.perf_counter()
                count = asyncio.run(_submit(net.socket("earth", "earth.sock"), clients, seconds,
                                            1024))
                wall = time.perf_counter() - started
                print(f"durable submissions, 1 KiB, {clients:2d} clients: {count / wall:9,.0f}/s")


async def _flow(sender: str, receiver: str, size: int, seconds: float, window: int) -> tuple:
    payload = os.urandom(size)
    received = 0
    last = None
    async with AsyncClient(receiver) as inbox, AsyncClient(sender) as outbox:
        await inbox.register("ipn:2.1")
        started = time.perf_counter()
        stop_at = started + seconds

        async def feed() -> None:
            while time.perf_counter() < stop_at:
                await asyncio.gather(*(outbox.send("ipn:2.1", payload) for _ in range(window)))

        async def drain() -> None:
            nonlocal received, last
            while True:
                item = await inbox.receive(timeout=12.0)  # > a custody timer at x1
                if item is None:
                    return
                last = time.perf_counter()
                received += len(item.data)
                await inbox.ack(item)

        await asyncio.gather(feed(), drain())
    # from the first send to the last delivery: the light time and one bundle's serialization
    # count against the figure, as they do for a user
    return received, 0.0 if last is None else last - started


def goodput(seconds: float) -> None:
    for rate in ("6 Mbit/s", "267 Mbit/s"):
        for size in (1024, 1_000_000):
            with tempfile.TemporaryDirectory() as folder:
                net, earth, mars, emulator = earth_mars(
                    Path(folder), light_time="20ms", rate=rate, ber=1e-5, loss=0.01, scale=1,
                    log_level="warning")
                with net:
                    start(net, earth, mars, emulator)
                    window = 64 if size < 100_000 else 4
                    got, span = asyncio.run(_flow(net.socket("earth", "earth.sock"),
                                                  net.socket("mars", "mars.sock"), size,
                                                  seconds, window))
            rate_bps = PARSE[rate]
            achieved = 8 * got / span if span else 0.0
            print(f"goodput {rate:>10}, {size:>9,} B bundles: {achieved / 1e6:7.2f} Mbit/s "
                  f"= {achieved / rate_bps:.2f} of the link rate ({got / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-goodput", action="store_true")
    args = parser.parse_args()
    submissions(args.seconds)
    if not args.skip_goodput:
        goodput(args.seconds)


if __name__ == "__main__":
    main()
