"""Stream convergence layer benchmark: two `dtn node` daemons on 127.0.0.1 linked directly
over TCPCLv3, TCPCLv4, MTCP or STCP, durable at both ends (SQLite, synchronous as given).

Earth's store is filled first with its neighbour away (each submission acknowledged once
durable); then Mars starts, and the clock runs from the first bundle an application on Mars
takes until it has taken (and acknowledged) the last: what the link carried, stored and
delivered per second. No BPSec between the two (the C stacks quoted for scale ran without
it); custody off (a TCP layer's acknowledgements make the hop reliable), or on with --custody.

    python -m tools.bench.cla [--layers tcpcl3,mtcp] [--small 2000] [--large 100]
                              [--synchronous NORMAL|FULL] [--custody]

For scale (issue #13, the C stacks on this kind of machine's loopback): µD3TN MTCP 6.5-6.8k
bundles/s of 10 KiB and 0.8-1.2 GB/s with 1 MiB; ION TCPCLv3 5.0-5.8k/s and 0.64-0.67 GB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from dtn.allocator import keep_freed_memory
from dtn.client import AsyncClient
from dtn.scenario.pair import stream_pair

_WINDOW = 64  # sends in flight on the submitting connection


async def _fill(path: str, count: int, size: int) -> None:
    payload = os.urandom(size)
    async with AsyncClient(path) as client:
        for start in range(0, count, _WINDOW):
            batch = min(_WINDOW, count - start)
            await asyncio.gather(*(client.send("ipn:2.1", payload) for _ in range(batch)))


async def _drain(path: str, count: int, size: int) -> float:
    """Seconds from the first of `count` bundles of `size` bytes taken on Mars to the last
    (the link's steady rate: how soon Earth's reconnection finds Mars up is not in it)."""
    got = 0
    async with AsyncClient(path) as inbox:
        await inbox.register("ipn:2.1")
        acks = []
        while got < count:
            item = await inbox.receive(timeout=60.0)
            if item is None:
                raise RuntimeError(f"only {got} of {count} bundles arrived")
            if len(item.data) != size:
                raise RuntimeError(f"a bundle of {len(item.data)} bytes, not {size}")
            got += 1
            if got == 1:
                started = time.perf_counter()
            acks.append(asyncio.ensure_future(inbox.ack(item)))
        await asyncio.gather(*acks)
        return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc: the figure a busy machine does
    not distort as much as wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(layer: str, count: int, size: int, synchronous: str,
        custody: bool) -> tuple[float, float, float, float]:
    """(bundles/s, MB/s, Earth's and Mars's CPU ms a bundle) of one layer and workload."""
    with tempfile.TemporaryDirectory() as folder:
        net, earth, mars = stream_pair(Path(folder), layer, security=False, custody=custody,
                                       log_level="warning", synchronous=synchronous)
        with net:
            net.node("earth", earth)
            net.wait_ready()
            asyncio.run(_fill(net.socket("earth", "earth.sock"), count, size))
            net.node("mars", mars).wait_ready()
            pids = [net.processes[name].popen.pid for name in ("earth", "mars")]
            before = [_cpu_seconds(pid) for pid in pids]
            seconds = asyncio.run(_drain(net.socket("mars", "mars.sock"), count, size))
            cpu = [1000 * (_cpu_seconds(pid) - b) / count for pid, b in zip(pids, before,
                                                                             strict=True)]
    return (count - 1) / seconds, (count - 1) * size / seconds / 1e6, cpu[0], cpu[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="tcpcl3,tcpcl4,mtcp,stcp")
    parser.add_argument("--small", type=int, default=2000, help="count of 10 KiB bundles")
    parser.add_argument("--large", type=int, default=100, help="count of 1 MiB bundles")
    parser.add_argument("--synchronous", default="NORMAL", choices=("NORMAL", "FULL"))
    parser.add_argument("--custody", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()  # the draining application's megabytes, as the nodes do
    print(f"store synchronous={args.synchronous}, custody {'on' if args.custody else 'off'}")
    for layer in args.layers.split(","):
        for count, size in ((args.small, 10 << 10), (args.large, 1 << 20)):
            if count:
                rate, mbps, earth, mars = run(layer, count, size, args.synchronous,
                                              args.custody)
                print(f"{layer:7s} {count:5d} x {size >> 10:5d} KiB: {rate:8,.0f} bundles/s "
                      f"{mbps:8,.1f} MB/s   CPU a bundle: earth {earth:6.3f} ms, "
                      f"mars {mars:6.3f} ms")


if __name__ == "__main__":
    main()
