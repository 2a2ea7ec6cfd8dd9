"""Datagrams/s the emulator proxy relays, its delay error, and its memory with 1 GB in flight.

Relays compared in the same run, each a separate process pinned to CPU 1, fed by a load
generator process and read by a sink process, both pinned to CPU 0 (on a 2-core machine shared
with other work, unpinned runs mostly measured who the scheduler favoured):
  - "minimal relay": a plain asyncio DatagramProtocol that forwards each datagram immediately
    (same 4 MiB socket buffers as the proxy);
  - "proxy, no delay": `dtn emulate` with no impairment;
  - "proxy, 20 min x1000": `dtn emulate` with a 20-minute light time at time_scale 1000 (1.2 s).
For each, the generator offers rising rates for a few seconds each; the sink counts what arrives.
"Relayed" is the highest delivered rate at which the relay kept up: under 1% loss and the median
datagram within 5 ms of its due time; "peak" the highest delivered rate at any offered load.
Delay error is arrival (the sink's kernel timestamp) - send (a timestamp in the datagram) -
configured delay, wall ms, at a reference rate (24,000/s of 1400 B, 8,000/s of 8 KiB). The
proxies' "late" counter says how many datagrams they sent more than 5 ms after their due time
over the whole sweep, overloads included. The proxies run with the default 64 MiB memory cap, so
at 20 min x1000 beyond ~40,000 datagrams/s of 1400 B or ~6,500/s of 8 KiB (>64 MiB in flight)
they are spooling to disk as well.

Memory: a full UDP run. The proxy (memory cap 64 MiB, 20 min at x80 = 15 s) is fed 1 GiB of
8 KiB datagrams; its peak resident memory (VmHWM) and the bytes in flight (its metrics endpoint)
are read while all of it is in flight, then the sink checks every datagram arrives.

Run: python -m tools.bench.emulator [--seconds 3] [--skip-memory] [--sizes 1400 8192]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dtn.config.units import parse_duration
from dtn.emulator.cli import READY_MESSAGE

SOCKET_BUFFER = 4 << 20
STAMP = struct.Struct("<dQ")  # send time (wall), sequence number
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SINK_BUFFER = 64 << 20
KERNEL_TIME = struct.Struct("qq")  # struct timespec
RATES = {
    1400: (16_000, 24_000, 32_000, 40_000, 50_000, 60_000, 75_000, 90_000, 110_000),
    8192: (8_000, 12_000, 16_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000),
}
MAX_LOSS = 0.01
MAX_MEDIAN_DELAY_ERROR_MS = 5.0
REFERENCE_RATE = {1400: 24_000, 8192: 8_000}  # where delay errors are compared


# -- roles run in their own processes --------------------------------------------------------


def run_generator(target: tuple[str, int], size: int, rate: float, seconds: float) -> dict:
    """Send `size`-byte datagrams at `rate`/s for `seconds`, each stamped with time and number."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.connect(target)
    padding = bytes(size - STAMP.size)
    sent = failed = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        while sent + failed < due:
            try:
                sock.send(STAMP.pack(time.time(), sent) + padding)
                sent += 1
            except OSError:
                failed += 1
        time.sleep(0.0002)
    return {"sent": sent, "failed": failed, "seconds": time.perf_counter() - start}


def run_sink(port: int, expected_delay: float, deadline: float, idle: float) -> dict:
    """Receive until `idle` seconds pass without data (after the first), or `deadline`.

    Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the sink's own
    scheduling on a busy machine does not count as the relay's delay error.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # the sink must not be what loses datagrams: past rmem_max when allowed (root)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SINK_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", port))
    print("ready", flush=True)
    errors = array.array("d")
    highest, out_of_order = -1, 0
    end = time.time() + deadline
    first = last = None
    sock.settimeout(idle)
    while time.time() < end:
        try:
            data, ancillary, _, _ = sock.recvmsg(65536, 64)
        except TimeoutError:
            if first is not None:
                break
            continue
        seconds, nanoseconds = KERNEL_TIME.unpack_from(ancillary[0][2])
        arrived = seconds + nanoseconds / 1e9
        first = first or arrived
        last = arrived
        sent_at, number = STAMP.unpack_from(data)
        errors.append(arrived - sent_at - expected_delay)
        out_of_order += number < highest
        highest = max(highest, number)
    ordered = sorted(errors)

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else 0

    return {
        "received": len(errors),
        "out_of_order": out_of_order,
        "span": (last - first) if first else 0.0,
        "delay_error_ms": {
            "p50": percentile(0.5),
            "p99": percentile(0.99),
            "max": ordered[-1] * 1000 if ordered else 0.0,
        },
    }


def run_minimal_relay(listen: tuple[str, int], forward: tuple[str, int]) -> None:
    class Relay(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, forward)

    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(listen)
        await asyncio.get_running_loop().create_datagram_endpoint(Relay, sock=sock)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(main())


# -- the orchestra ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The relay under test gets a core of its own; generator and sink share the other one.
PINNED = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
RELAY_CPUS, LOAD_CPUS = {1}, {0}


def spawn(command: list[str], cpus: set[int], **popen) -> subprocess.Popen:
    process = subprocess.Popen(command, text=True, **popen)
    if PINNED:
        os.sched_setaffinity(process.pid, cpus)
    return process


def role(*args: str, cpus: set[int] = LOAD_CPUS) -> subprocess.Popen:
    command = [sys.executable, "-m", "tools.bench.emulator", "--role", *args]
    return spawn(command, cpus, stdout=subprocess.PIPE)


def wait_ready(process: subprocess.Popen, stream) -> None:
    for line in stream:
        if "ready" in line:
            return
    raise RuntimeError(f"process {process.args} exited before it was ready")


class Relay:
    """A relay process under test: the minimal relay, or `dtn emulate` with a config."""

    def __init__(self, listen: int, forward: int, proxy_config: str | None = None) -> None:
        self.is_proxy = proxy_config is not None
        if not self.is_proxy:
            self.process = role(
                *("relay", "--listen", str(listen), "--forward", str(forward)), cpus=RELAY_CPUS
            )
            wait_ready(self.process, self.process.stdout)
            return
        self._directory = tempfile.TemporaryDirectory(prefix="dtn-bench-emulator-")
        config = Path(self._directory.name) / "link.toml"
        config.write_text(proxy_config)
        self._log = Path(self._directory.name) / "stderr.log"
        with self._log.open("w") as log:
            self.process = spawn(
                [sys.executable, "-m", "dtn.cli", "emulate", "-c", str(config)],
                RELAY_CPUS,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        deadline = time.time() + 30
        while READY_MESSAGE not in self._log.read_text():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"dtn emulate did not start: {self._log.read_text()}")
            time.sleep(0.05)

    def resident_peak_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> str:
        """Stop the relay; the proxy's final counters."""
        self.process.send_signal(signal.SIGTERM)
        stdout, _ = self.process.communicate(timeout=30)
        if self.is_proxy:
            self._directory.cleanup()
        return stdout


def proxy_config(listen: int, forward: int, scale: float, delay: str, extra: str = "") -> str:
    return f"""
[clock]
time_scale = {scale}
[emulator]
memory_cap = "64MiB"
{extra}
[[link]]
name = "bench"
a = {{ node = "127.0.0.1:{free_port()}", listen = "127.0.0.1:{listen}" }}
b = {{ node = "127.0.0.1:{forward}", listen = "127.0.0.1:0" }}
delay = "{delay}"
"""


def run_load(
    relay_port: int,
    sink_port: int,
    size: int,
    rate: float,
    seconds: float,
    expected_delay: float,
    while_in_flight=lambda: None,
):
    """Generator -> relay -> sink: (what was sent, what arrived, `while_in_flight()`'s result,
    called when the generator has finished)."""
    sink = role(
        *("sink", "--port", str(sink_port), "--expected-delay", str(expected_delay)),
        *("--deadline", str(seconds + expected_delay + 30), "--idle", "2.0"),
    )
    wait_ready(sink, sink.stdout)
    generator = role(
        *("gen", "--target", str(relay_port), "--size", str(size)),
        *("--rate", str(rate), "--seconds", str(seconds)),
    )
    sent = json.loads(generator.communicate()[0])
    observed = while_in_flight()
    received = json.loads(sink.communicate()[0])
    return sent, received, observed


def measure_point(
    relay_port: int, sink_port: int, size: int, rate: float, seconds: float, expected_delay: float
) -> dict:
    sent, received, _ = run_load(relay_port, sink_port, size, rate, seconds, expected_delay)
    delivered = received["received"]
    return {
        "offered": rate,
        "delivered_rate": delivered / sent["seconds"],
        "loss": 1 - delivered / max(1, sent["sent"]),
        **received,
    }


def kept_up(point: dict) -> bool:
    """Under 1% loss, and the median datagram within a few milliseconds of its due time (a
    relay that falls behind builds a backlog, and the median grows with it)."""
    return point["loss"] < MAX_LOSS and point["delay_error_ms"]["p50"] < MAX_MEDIAN_DELAY_ERROR_MS


def sweep(size: int, seconds: float, delay: str | None, scale: float = 1000.0) -> dict:
    """Offer rising rates to a relay: the minimal one when `delay` is None, else the proxy."""
    relay_port, sink_port = free_port(), free_port()
    if delay is None:
        relay, expected = Relay(relay_port, sink_port), 0.0
    else:
        relay = Relay(relay_port, sink_port, proxy_config(relay_port, sink_port, scale, delay))
        expected = parse_duration(delay) / scale
    points = []
    try:
        for rate in RATES[size]:
            points.append(measure_point(relay_port, sink_port, size, rate, seconds, expected))
            if len(points) >= 2 and not any(kept_up(point) for point in points[-2:]):
                break  # saturated
    finally:
        counters = relay.stop()
    late = re.search(r"late (\d+) \(max ([\d.]+) ms\)", counters)
    return {
        "relayed": max((p["delivered_rate"] for p in points if kept_up(p)), default=0.0),
        "peak": max(point["delivered_rate"] for point in points),
        "reference": next((p for p in points if p["offered"] == REFERENCE_RATE[size]), None),
        "late": f"{late.group(1)} late, max {late.group(2)} ms" if late else "",
    }


def memory_run(total_bytes: int, size: int, rate: float) -> dict:
    relay_port, sink_port, metrics_port = free_port(), free_port(), free_port()
    scale = 80.0  # 20 minutes last 15 s: all of it is in flight when the generator finishes
    config = proxy_config(
        relay_port, sink_port, scale, "20min", f'metrics = "127.0.0.1:{metrics_port}"'
    )
    relay = Relay(relay_port, sink_port, config)

    def in_flight() -> dict:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            metrics = response.read().decode()
        gauges = {"in_flight_bytes": 0.0, "spooled_bytes": 0.0}
        for line in metrics.splitlines():
            name = line.split("{", 1)[0].removeprefix("dtn_emulator_")
            if name in gauges:
                gauges[name] += float(line.rsplit(" ", 1)[1])
        return {**gauges, "peak_rss_mb": relay.resident_peak_mb()}

    try:
        sent, received, observed = run_load(
            relay_port, sink_port, size, rate, total_bytes // size / rate, 1200 / scale, in_flight
        )
    finally:
        counters = relay.stop()
    return {
        "sent": sent["sent"],
        "received": received["received"],
        "out_of_order": received["out_of_order"],
        "fill_seconds": sent["seconds"],
        "proxy": next((line.strip() for line in counters.splitlines() if "a->b" in line), ""),
        **observed,
    }


def report_sweeps(size: int, results: dict[str, dict]) -> None:
    reference = REFERENCE_RATE[size]
    print(
        f"\n{size} B datagrams (delay error: arrival - send - configured delay, at {reference}/s)"
    )
    print(
        f"  {'relay':22} {'relayed/s':>9} {'Mbit/s':>7} {'peak/s':>7}  "
        f"{'delay error p50/p99/max ms':26}  proxy counters (whole sweep)"
    )
    for name, result in results.items():
        point = result["reference"]
        errors = (
            "{p50:6.2f} /{p99:6.2f} /{max:7.2f}".format(**point["delay_error_ms"])
            if point and point["loss"] < MAX_LOSS
            else "(lossy at this rate)"
        )
        print(
            f"  {name:22} {result['relayed']:9.0f} {result['relayed'] * size * 8 / 1e6:7.0f} "
            f"{result['peak']:7.0f}  {errors:26}  {result['late']}"
        )
    minimal = results["minimal relay"]["relayed"]
    for name, result in results.items():
        if name != "minimal relay" and minimal:
            print(f"  {name} / minimal relay: {result['relayed'] / minimal:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("gen", "sink", "relay"))
    parser.add_argument("--target", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--listen", type=int)
    parser.add_argument("--forward", type=int)
    parser.add_argument("--size", type=int, default=1400)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--expected-delay", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1400, 8192])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-gib", type=float, default=1.0)
    args = parser.parse_args()
    if args.role == "gen":
        print(
            json.dumps(
                run_generator(("127.0.0.1", args.target), args.size, args.rate, args.seconds)
            )
        )
        return
    if args.role == "sink":
        print(json.dumps(run_sink(args.port, args.expected_delay, args.deadline, args.idle)))
        return
    if args.role == "relay":
        run_minimal_relay(("127.0.0.1", args.listen), ("127.0.0.1", args.forward))
        return

    print(
        f"emulator relay benchmark, {os.cpu_count()} CPUs, {args.seconds:g} s per offered rate, "
        + ("relay on CPU 1, generator and sink on CPU 0" if PINNED else "unpinned")
    )
    for size in args.sizes:
        results = {
            "minimal relay": sweep(size, args.seconds, None),
            "proxy, no delay": sweep(size, args.seconds, "0s"),
            "proxy, 20 min x1000": sweep(size, args.seconds, "20min"),
        }
        report_sweeps(size, results)
    if not args.skip_memory:
        total = int(args.memory_gib * (1 << 30))
        result = memory_run(total, 8192, 12_000)
        print(
            f"\nmemory, {total / 2**30:g} GiB of 8 KiB datagrams in flight "
            f"(proxy memory cap 64 MiB, full UDP run):"
        )
        print(
            f"  in flight when the generator finished: {result['in_flight_bytes'] / 1e6:.0f} MB "
            f"({result['spooled_bytes'] / 1e6:.0f} MB spooled to disk) "
            f"after {result['fill_seconds']:.1f} s"
        )
        print(f"  proxy peak resident memory (VmHWM): {result['peak_rss_mb']:.0f} MB")
        print(
            f"  delivered {result['received']} of {result['sent']} sent, "
            f"{result['out_of_order']} out of order"
        )
        print(f"  proxy: {result['proxy']}")


if __name__ == "__main__":
    main()
