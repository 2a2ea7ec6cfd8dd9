"""Node benchmark: real daemons and the emulator on 127.0.0.1.

(a) durable submissions/s through the API: 1 KiB bundles from concurrent AsyncClients to a node
    whose neighbour is not running (everything stays in its SQLite store, synchronous=FULL);
(b) end-to-end goodput through the emulator at wall-clock rates (time_scale = 1, light time
    20 ms), BER 1e-5, 1% loss: application bytes delivered per second over the link rate,
    1 KiB and 1 MB bundles, 6 Mbit/s and 267 Mbit/s; in the steady state (after the first
    custody round, while the sender keeps the link busy) and over the whole run.
(c) a large file (2 GiB by default, half random, half compressible) sent with `dtn send` from
    Mars and taken with `dtn recv --out` on Earth, through the emulator at wall-clock rates
    (time_scale 1, light time 20 ms, 267 Mbit/s, BER 1e-5, 1% loss): wall time, and the
    peak resident memory of each process (VmHWM of the daemons and the emulator, ru_maxrss of
    the two CLI processes).

    python -m tools.bench.node [--seconds 5] [--goodput-seconds 30] [--skip-goodput]
                               [--rate "6 Mbit/s"] [--size 1024] [--skip-submissions]
                               [--large-mib 2048 | --large-mib 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dtn.client import AsyncClient
from dtn.scenario.pair import earth_mars, file_sha256, start, write_science_file

PARSE = {"6 Mbit/s": 6e6, "267 Mbit/s": 267e6}


async def _submit(path: str, clients: int, seconds: float, size: int, window: int) -> int:
    """Sends made durable in `seconds` by `clients` clients, each with `window` sends in
    flight (pipelined on its connection)."""
    payload = os.urandom(size)
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        async with AsyncClient(path) as client:
            while time.perf_counter() < stop_at:
                await asyncio.gather(*(client.send("ipn:2.1", payload) for _ in range(window)))
                done += window

    await asyncio.gather(*(one() for _ in range(clients)))
    return done


def submissions(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # A light time of hours: no custody timer runs out while the peer is away. Wall-clock
        # rates (scale 1): the link takes 2 Mbit/s of what is stored, as a real one would,
        # rather than the 2 Gbit/s a x1000 clock makes of it.
        net, earth, _, _ = earth_mars(Path(folder), light_time="6h", scale=1,
                                      log_level="warning")
        # durable across power loss, not only across a crash of the process
        earth.write_text(earth.read_text().replace('"NORMAL"', '"FULL"'))
        with net:
            net.node("earth", earth)
            net.wait_ready()
            for clients, window in ((1, 1), (16, 1), (64, 1), (1, 64), (4, 64)):
                started = time.perf_counter()
                count = asyncio.run(_submit(net.socket("earth", "earth.sock"), clients, seconds,
                                            1024, window))
                wall = time.perf_counter() - started
                print(f"durable submissions, 1 KiB, {clients:2d} clients x {window:2d} in flight: "
                      f"{count / wall:9,.0f}/s")


# Custody round trip of the goodput runs: 2 x 20 ms light time + the 5 s custody margin of
# dtn.scenario.pair + 1 s of custody-signal aggregation. A lost bundle is sent again this long
# after its first try, so a steady state holds retransmissions only from then on.
_CUSTODY_ROUND = 6.04


async def flow(sender: str, receiver: str, size: int, seconds: float, window: int,
                budget: int) -> tuple[int, float, float]:
    """Send `size`-byte bundles for `seconds`, `window` at a time and at most `budget` bytes
    sent and not yet delivered (as an application that does not fill its node's store would).
    Returns (bytes delivered, whole-run goodput, steady-state goodput) in bit/s: the whole run
    is from the first send to the last delivery (light time, custody tail and all); the steady
    state is what was delivered after the first custody round until the feed stopped."""
    payload = os.urandom(size)
    delivered = 0
    sent = 0
    steady_from = min(2 * _CUSTODY_ROUND, seconds / 2)
    steady_bytes = 0
    last = None
    room = asyncio.Event()
    async with AsyncClient(receiver) as inbox, AsyncClient(sender) as outbox:
        await inbox.register("ipn:2.1")
        started = time.perf_counter()
        stop_at = started + seconds

        async def feed() -> None:
            nonlocal sent
            while time.perf_counter() < stop_at:
                if sent - delivered > budget:
                    room.clear()
                    await room.wait()
                    continue
                sent += window * size
                await asyncio.gather(*(outbox.send("ipn:2.1", payload) for _ in range(window)))

        async def drain() -> None:
            nonlocal delivered, last, steady_bytes
            acks: set[asyncio.Task] = set()  # acknowledged without waiting, as sends are made
            while True:
                item = await inbox.receive(timeout=12.0)  # > a custody round at x1
                if item is None:
                    break
                last = time.perf_counter()
                delivered += len(item.data)
                if started + steady_from <= last <= stop_at:
                    steady_bytes += len(item.data)
                room.set()
                ack = asyncio.ensure_future(inbox.ack(item))
                acks.add(ack)
                ack.add_done_callback(acks.discard)
            await asyncio.gather(*acks)

        await asyncio.gather(feed(), drain())
    whole = 0.0 if last is None else 8 * delivered / (last - started)
    return delivered, whole, 8 * steady_bytes / (seconds - steady_from)


def goodput(seconds: float, rates: list[str], sizes: list[int]) -> None:
    for rate in rates:
        for size in sizes:
            rate_bps = PARSE[rate]
            with tempfile.TemporaryDirectory() as folder:
                net, earth, mars, emulator = earth_mars(
                    Path(folder), light_time="20ms", rate=rate, ber=1e-5, loss=0.01, scale=1,
                    log_level="warning")
                with net:
                    start(net, earth, mars, emulator)
                    window = 64 if size < 100_000 else 4
                    # four custody rounds of the link's bytes keep it busy: a bundle that lost
                    # a fragment is delivered a round or two after the rest
                    budget = int(rate_bps / 8 * 4 * _CUSTODY_ROUND)
                    got, whole, steady = asyncio.run(flow(
                        net.socket("earth", "earth.sock"), net.socket("mars", "mars.sock"), size,
                        seconds, window, budget))
            print(f"goodput {rate:>10}, {size:>9,} B bundles: steady {steady / 1e6:7.2f} Mbit/s "
                  f"= {steady / rate_bps:.2f} of the link rate; whole run {whole / 1e6:7.2f} "
                  f"Mbit/s = {whole / rate_bps:.2f} ({got / 1e6:.1f} MB)")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dtn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _reap(process: subprocess.Popen) -> tuple[int, float, str]:
    """(exit status, peak RSS in MiB, standard output) of a finished CLI process."""
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, out


def large_file(mib: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        payload = folder / "science.bin"
        expected = write_science_file(payload, mib)
        net, earth, mars, emulator = earth_mars(folder, light_time="20ms", rate="267 Mbit/s",
                                                ber=1e-5, loss=0.01, scale=1,
                                                log_level="warning")
        with net:
            start(net, earth, mars, emulator)
            inbox = folder / "inbox"
            started = time.perf_counter()
            recv = _cli(["recv", "--socket", net.socket("earth", "earth.sock"), "--endpoint",
                         "ipn:1.1", "--out", str(inbox), "--count", "1", "--timeout", "900"])
            send = _cli(["send", "--socket", net.socket("mars", "mars.sock"), "--to", "ipn:1.1",
                         str(payload)])
            send_status, send_rss, _ = _reap(send)
            accepted = time.perf_counter() - started
            recv_status, recv_rss, line = _reap(recv)
            wall = time.perf_counter() - started
            peaks = {name: _peak_rss_mib(process.popen.pid)
                     for name, process in net.processes.items()}
        target = Path(line.split()[2]) if recv_status == 0 else None
        intact = target is not None and file_sha256(target) == expected
    print(f"large file, {mib:,} MiB: accepted by Mars in {accepted:.1f} s, delivered on Earth "
          f"in {wall:.1f} s ({mib / wall:.1f} MiB/s), {'intact' if intact else 'NOT INTACT'} "
          f"(send exit {send_status}, recv exit {recv_status})")
    peaks.update({"dtn send": send_rss, "dtn recv": recv_rss})
    print("  peak RSS: " + ", ".join(f"{name} {rss:.0f} MiB" for name, rss in peaks.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="of submissions")
    parser.add_argument("--goodput-seconds", type=float, default=30.0,
                        help="of feeding each goodput run")
    parser.add_argument("--skip-goodput", action="store_true")
    parser.add_argument("--rate", action="append", choices=list(PARSE),
                        help="goodput at this link rate (repeatable; default: both)")
    parser.add_argument("--size", action="append", type=int,
                        help="goodput with bundles of this many bytes (repeatable; default: "
                             "1024 and 1000000)")
    parser.add_argument("--skip-submissions", action="store_true")
    parser.add_argument("--large-mib", type=int, default=2048, help="0: skip the large file")
    args = parser.parse_args()
    if not args.skip_submissions:
        submissions(args.seconds)
    if not args.skip_goodput:
        goodput(args.goodput_seconds, args.rate or list(PARSE), args.size or [1024, 1_000_000])
    if args.large_mib:
        large_file(args.large_mib)


if __name__ == "__main__":
    main()
