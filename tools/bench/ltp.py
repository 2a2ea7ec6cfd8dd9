"""LTP benchmark: the ltp, ltp+rs and udp-rs convergence layers side by side, real daemons and
the emulator on 127.0.0.1.

(1) a file of `--mib` MiB (5 by default), sent as 1 MiB bundles from Earth to Mars through the
    emulator with a 20-minute light time on a x1000 clock (`--scale`), 256 kbit/s, 1% datagram
    loss (`--loss`), no bit errors (`--ber`): ltp and ltp+rs with custody = false (LTP makes
    it reliable), udp-rs with custody = true (custody retransmission does; custody_margin
    `--custody-margin`, the node's default 30 s: dtn.scenario.pair's 5 s is shorter than a
    fragment's custody turnaround, so every fragment would go twice). For each layer:
    - the bytes the nodes put on the emulated link (the emulator's bytes_in counters, read from
      its metrics endpoint once the traffic has died down: LTP's last reports and report-acks,
      the custody signals), Earth->Mars and Mars->Earth, per application byte delivered;
    - the mission time from the first send to the last delivery, also written as
      "serialization time + N round trips": the serialization time is the application bytes
      at the link rate, N = (time - serialization time) / (2 x light time).
(2) unless --skip-fast: LTP goodput at wall-clock rates (time_scale 1, light time 20 ms,
    267 Mbit/s, the same loss), ltp and ltp+rs, custody = false, LTP segments of
    `--fast-segment` bytes (16384: at 1024, 32,000 datagrams a second): 1 MB bundles sent for
    `--fast-seconds` (15) while at most `--fast-budget` bytes are sent and not yet delivered;
    application bytes delivered per second from the first send to the last delivery, over the
    link rate.

    python -m tools.bench.ltp [--mib 5] [--loss 0.01] [--light-time 20min] [--scale 1000]
                              [--rate "256 kbit/s"] [--ber 0] [--skip-fast]
                              [--custody-margin 30s] [--fast-seconds 15]
                              [--layers ltp ltp+rs udp-rs]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dtn.client import AsyncClient, Client
from dtn.config.units import parse_duration, parse_rate
from dtn.scenario.pair import earth_mars, start
from dtn.scenario.processes import Network, free_ports
from tools.bench.node import flow

LAYERS = ("ltp", "ltp+rs", "udp-rs")
CHUNK = 1 << 20  # application bytes per bundle
FAST_RATE = "267 Mbit/s"
FAST_LIGHT_TIME = "20ms"
# status()["links"] fields that are not counters; the agent counters worth printing
SKIP = ("up", "light_time", "rate_bps", "next_contact", "session")
AGENT_KEYS = ("transmitted", "fragmented", "retransmissions", "fast_retransmissions",
              "custody_released", "signals_received")


def neighbour_lines(layer: str, segment_size: int | None = None) -> str:
    lines = f'cla = "{layer}"\ncustody = {"true" if layer == "udp-rs" else "false"}'
    if segment_size is not None and layer != "udp-rs":
        lines += f"\nltp = {{ segment_size = {segment_size} }}"
    return lines


def with_metrics(emulator: Path) -> str:
    """Turn on the emulator's metrics endpoint (the config earth_mars wrote has no [emulator]
    table); the URL to read."""
    (port,) = free_ports(1, "tcp")
    text = emulator.read_text().replace(
        "[[link]]", f'[emulator]\nmetrics = "127.0.0.1:{port}"\n[[link]]', 1)
    emulator.write_text(text)
    return f"http://127.0.0.1:{port}/metrics"


_METRIC = re.compile(r'^dtn_emulator_(\w+)\{([^}]*)\} (\S+)$')


def emulator_counters(url: str) -> dict[str, dict[str, float]]:
    """direction ("earth->mars") -> metric name (with a reason suffix for drops) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if "reason" in fields:
            name = f"{name}:{fields['reason']}"
        out.setdefault(fields.get("direction", "?"), {})[name] = float(value)
    return out


def settled_counters(url: str, quiet: float, cap: float) -> dict[str, dict[str, float]]:
    """The emulator's counters once its bytes_in has not moved for `quiet` wall seconds (the
    protocols' tails: LTP's final reports and acks, custody signals), or after `cap` seconds."""
    last = emulator_counters(url)
    still_since = time.monotonic()
    give_up = still_since + cap
    while time.monotonic() < give_up:
        time.sleep(0.25)
        now = emulator_counters(url)
        moved = any(now[d].get("bytes_in_total") != last.get(d, {}).get("bytes_in_total")
                    for d in now)
        last = now
        if moved:
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return last


@dataclass
class Outcome:
    sent_bundles: int = 0
    sent_bytes: int = 0
    delivered_bundles: int = 0
    delivered_bytes: int = 0
    duplicates: int = 0
    corrupt: int = 0
    first_send: float = 0.0
    last_delivery: float | None = None
    error: str = ""
    link: dict = field(default_factory=dict)


async def transfer(earth: str, mars: str, mib: int, timeout: float) -> Outcome:
    """`mib` bundles of 1 MiB (random) from Earth to ipn:2.1 on Mars; waits up to `timeout`
    wall seconds for all of them."""
    outcome = Outcome()
    expected: dict[str, bytes] = {}
    seen: set[str] = set()
    async with AsyncClient(mars) as inbox, AsyncClient(earth, timeout=120) as outbox:
        await inbox.register("ipn:2.1")
        outcome.first_send = time.perf_counter()
        deadline = outcome.first_send + timeout

        async def feed() -> None:
            for _ in range(mib):
                data = os.urandom(CHUNK)
                bundle_id = await outbox.send("ipn:2.1", data)
                expected[str(bundle_id)] = hashlib.sha256(data).digest()
                outcome.sent_bundles += 1
                outcome.sent_bytes += len(data)

        async def drain() -> None:
            while outcome.delivered_bundles < mib:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return
                item = await inbox.receive(timeout=left)
                if item is None:
                    return
                outcome.last_delivery = time.perf_counter()
                key = str(item.bundle_id)
                if key in seen:
                    outcome.duplicates += 1
                else:
                    seen.add(key)
                    outcome.delivered_bundles += 1
                    outcome.delivered_bytes += len(item.data)
                    digest = hashlib.sha256(item.data).digest()
                    if key in expected and expected[key] != digest:
                        outcome.corrupt += 1
                await inbox.ack(item)

        await asyncio.gather(feed(), drain())
    return outcome


def link_status(path: str) -> dict:
    """The non-zero counters of a node's link to Mars, with the agent's transmissions and
    custody retransmissions and what its store still holds."""
    try:
        with Client(path) as client:
            status = client.status()
    except (OSError, ConnectionError, TimeoutError) as exc:
        return {"error": str(exc)}
    link = status["links"].get("mars", {})
    agent = status.get("agent", {})
    return {k: v for k, v in link.items() if k not in SKIP and v} | {
        f"agent.{k}": agent[k] for k in AGENT_KEYS if agent.get(k)
    } | {"store_bundles": status["store"]["bundles"]}


def mission_file(layer: str, args: argparse.Namespace) -> dict:
    light = parse_duration(args.light_time)
    rate = parse_rate(args.rate)
    with tempfile.TemporaryDirectory() as folder:
        net, earth, mars, emulator = earth_mars(
            Path(folder), light_time=args.light_time, rate=args.rate, ber=args.ber,
            loss=args.loss, scale=args.scale, neighbour=neighbour_lines(layer),
            log_level="warning")
        if layer == "udp-rs":  # dtn.scenario.pair's 5 s is for tests that wait for timers
            for config in (earth, mars):
                config.write_text(config.read_text().replace(
                    'custody_margin = "5s"', f'custody_margin = "{args.custody_margin}"'))
        url = with_metrics(emulator)
        with net:
            start(net, earth, mars, emulator)
            earth_sock, mars_sock = net.socket("earth", "earth.sock"), net.socket("mars",
                                                                                 "mars.sock")
            try:
                outcome = asyncio.run(transfer(earth_sock, mars_sock, args.mib, args.timeout))
            except Exception as exc:  # a failed layer is reported, not raised
                outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
            # the tail: LTP's last report-acks, custody signals (a round trip and some)
            try:
                counters = settled_counters(url, quiet=2 * light / args.scale + 1.0,
                                            cap=4 * light / args.scale + 10.0)
            except OSError as exc:  # the emulator is gone: say so, report the rest
                outcome.error += f" (emulator metrics: {exc})"
                counters = {}
            outcome.link = link_status(earth_sock)
            logs = _log_warnings(net)
    return {"layer": layer, "outcome": outcome, "counters": counters, "light": light,
            "rate": rate, "logs": logs}


def _log_warnings(net: Network) -> list[str]:
    lines = []
    for name, process in net.processes.items():
        text = process.log_path.read_text(errors="replace").splitlines()
        hits = [line for line in text if "WARNING" in line or "ERROR" in line or "Trace" in line]
        lines += [f"{name}: {line[:160]}" for line in hits[-3:]]
    return lines


def report_file(result: dict, args: argparse.Namespace) -> None:
    out: Outcome = result["outcome"]
    counters, light, rate = result["counters"], result["light"], result["rate"]
    e2m = counters.get("earth->mars", {})
    m2e = counters.get("mars->earth", {})
    up, down = e2m.get("bytes_in_total", 0.0), m2e.get("bytes_in_total", 0.0)
    layer = result["layer"]
    custody = "custody" if layer == "udp-rs" else "no custody"
    head = f"  {layer:<7} ({custody:<10})"
    complete = out.delivered_bundles == args.mib and not out.error
    per = f"{(up + down) / out.delivered_bytes:6.3f} B/B" if out.delivered_bytes else "n/a"
    print(f"{head} link bytes Earth->Mars {up / 1e6:8.3f} MB, Mars->Earth {down / 1e6:7.3f} MB"
          f" = {per} of the {out.delivered_bytes / 1e6:.3f} MB delivered"
          f" (Earth->Mars alone {up / max(out.delivered_bytes, 1):.3f})")
    ser = 8 * args.mib * CHUNK / rate
    if out.last_delivery is not None:
        mission = (out.last_delivery - out.first_send) * args.scale
        trips = (mission - ser) / (2 * light)
        tag = "all delivered" if complete else "LAST DELIVERY SEEN, NOT ALL DELIVERED"
        print(f"{'':20} mission time {mission:8.0f} s = {mission / 60:6.1f} min"
              f" = serialization {ser:.0f} s + {trips:5.2f} round trips ({tag})")
    if not complete:
        print(f"{'':20} FAILED: {out.delivered_bundles}/{args.mib} bundles delivered"
              f" ({out.sent_bundles} sent) within {args.timeout:.0f} s wall"
              f"{'; ' + out.error if out.error else ''}")
    if out.duplicates or out.corrupt:
        print(f"{'':20} duplicates {out.duplicates}, corrupt {out.corrupt}")
    drops = {k.split(":", 1)[1]: int(v) for d in (e2m, m2e) for k, v in d.items()
             if k.startswith("datagrams_dropped_total:") and v}
    late = int(e2m.get("late_datagrams_total", 0) + m2e.get("late_datagrams_total", 0))
    print(f"{'':20} emulator: datagrams in {int(e2m.get('datagrams_in_total', 0))} / "
          f"{int(m2e.get('datagrams_in_total', 0))}, dropped {drops or 0}, late {late}")
    print(f"{'':20} Earth's link to Mars: {out.link}")
    if not complete:
        for line in result["logs"]:
            print(f"{'':20} log {line}")


def fast(layer: str, args: argparse.Namespace) -> None:
    rate = parse_rate(FAST_RATE)
    with tempfile.TemporaryDirectory() as folder:
        net, earth, mars, emulator = earth_mars(
            Path(folder), light_time=FAST_LIGHT_TIME, rate=FAST_RATE, ber=args.ber,
            loss=args.loss, scale=1, neighbour=neighbour_lines(layer, args.fast_segment),
            log_level="warning")
        url = with_metrics(emulator)
        with net:
            start(net, earth, mars, emulator)
            earth_sock = net.socket("earth", "earth.sock")
            try:
                got, whole, _ = asyncio.run(flow(earth_sock, net.socket("mars", "mars.sock"),
                                                 1_000_000, args.fast_seconds, 4,
                                                 args.fast_budget))
                wall, error = (8 * got / whole if whole else 0.0), ""
            except Exception as exc:
                got, wall, error = 0, 0.0, f"{type(exc).__name__}: {exc}"
            try:
                counters = emulator_counters(url)
            except OSError as exc:
                counters, error = {}, f"{error} (emulator metrics: {exc})"
            link = link_status(earth_sock)
    up = counters.get("earth->mars", {}).get("bytes_in_total", 0.0)
    down = counters.get("mars->earth", {}).get("bytes_in_total", 0.0)
    goodput = 8 * got / wall if wall else 0.0
    print(f"  {layer:<7} goodput {goodput / 1e6:7.2f} Mbit/s = {goodput / rate:.3f} of"
          f" {FAST_RATE} ({got / 1e6:.0f} MB in {wall:.1f} s); link bytes"
          f" {(up + down) / max(got, 1):.3f} B per delivered B")
    if error or not got:
        print(f"  {'':7} FAILED: {error or 'nothing delivered'}")
    print(f"  {'':7} Earth's link to Mars: {link}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=5)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--ber", type=float, default=0.0)
    parser.add_argument("--light-time", default="20min")
    parser.add_argument("--rate", default="256 kbit/s")
    parser.add_argument("--scale", type=float, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="wall seconds a layer has to deliver the file")
    parser.add_argument("--custody-margin", default="30s",
                        help="udp-rs: added to the round trip before a custody retransmission "
                             "(the node's default; dtn.scenario.pair sets 5s)")
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    parser.add_argument("--skip-fast", action="store_true")
    parser.add_argument("--fast-seconds", type=float, default=15.0)
    parser.add_argument("--fast-budget", type=int, default=32_000_000)
    parser.add_argument("--fast-segment", type=int, default=16384,
                        help="LTP data bytes a segment in the fast run: a 267 Mbit/s link is "
                             "configured with larger segments than a deep-space one (1024)")
    args = parser.parse_args()
    light = parse_duration(args.light_time)
    rate = parse_rate(args.rate)
    ser = 8 * args.mib * CHUNK / rate
    print(f"(1) {args.mib} MiB ({args.mib * CHUNK / 1e6:.3f} MB) as {args.mib} bundles of 1 MiB,"
          f" Earth->Mars: light time {light:.0f} s one way ({2 * light / 60:.0f} min round"
          f" trip), {rate / 1e3:.0f} kbit/s, loss {args.loss:g}, BER {args.ber:g},"
          f" time_scale {args.scale:g}; serialization time {ser:.1f} s"
          f" ({ser / 60:.2f} min) of mission time; udp-rs custody_margin {args.custody_margin},"
          f" LTP timeout_margin 1 s (the default)")
    for layer in args.layers:
        report_file(mission_file(layer, args), args)
    if not args.skip_fast:
        print(f"(2) goodput at {FAST_RATE}, light time {FAST_LIGHT_TIME}, time_scale 1, loss"
              f" {args.loss:g}, BER {args.ber:g}, 1 MB bundles for {args.fast_seconds:g} s"
              f" (at most {args.fast_budget / 1e6:.0f} MB sent and not delivered), LTP"
              f" segments of {args.fast_segment} bytes")
        for layer in ("ltp", "ltp+rs"):
            if layer in args.layers:
                fast(layer, args)


if __name__ == "__main__":
    main()
