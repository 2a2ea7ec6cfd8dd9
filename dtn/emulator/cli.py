"""`dtn emulate -c CONFIG`: run the link emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from dtn.config.units import parse_address
from dtn.emulator.config import ConfigError, load_config
from dtn.emulator.proxy import EmulatorProxy
from dtn.emulator.stats import format_snapshot, render_prometheus
from dtn.metrics_http import serve_metrics

log = logging.getLogger("dtn.emulator")

BEHIND_CHECK_PERIOD = 5.0  # wall seconds, when no stats interval is set
READY_MESSAGE = "emulator ready"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulate",
        help="run the link emulator: a UDP proxy adding light time, errors, loss, rate limits",
        description="Relay UDP between nodes through emulated links (see docs/emulator.md).",
    )
    parser.add_argument("-c", "--config", type=Path, required=True, help="emulator TOML config")
    parser.add_argument(
        "--stats-interval",
        type=float,
        metavar="SECONDS",
        help="log per-direction counters every SECONDS of wall time (0: never; default: config)",
    )
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", help="serve Prometheus metrics here (default: config)"
    )
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after SECONDS of wall time"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="default INFO",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
        if args.stats_interval is not None:
            if not args.stats_interval >= 0:
                raise ConfigError(f"--stats-interval must be >= 0, got {args.stats_interval}")
            config = replace(config, stats_interval=args.stats_interval)
        if args.metrics is not None:
            try:
                config = replace(config, metrics=parse_address(args.metrics))
            except ValueError as error:
                raise ConfigError(f"--metrics: {error}") from None
    except ConfigError as error:
        print(f"dtn emulate: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.duration))
    except OSError as error:
        print(f"dtn emulate: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


async def _serve(config, duration: float | None) -> None:
    loop = asyncio.get_running_loop()
    proxy = EmulatorProxy(config)
    proxy.start()
    metrics_server = None
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    monitor = asyncio.create_task(_monitor(proxy, config.stats_interval))
    try:
        if config.metrics is not None:
            metrics_server = await serve_metrics(
                config.metrics, lambda: render_prometheus(proxy.snapshots())
            )
            log.info("metrics at http://%s:%d/metrics", *config.metrics)
        log.info("%s (time_scale %g)", READY_MESSAGE, config.time_scale)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        monitor.cancel()
        if metrics_server is not None:
            metrics_server.close()
        snapshots = proxy.snapshots()
        proxy.close()
        print("dtn emulate: final counters")
        for snapshot in snapshots:
            print(f"  {format_snapshot(snapshot)}")
        sys.stdout.flush()


async def _monitor(proxy: EmulatorProxy, stats_interval: float) -> None:
    """Log counters every stats interval, and warn whenever a direction has fallen behind."""
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    while True:
        await asyncio.sleep(stats_interval or BEHIND_CHECK_PERIOD)
        for snapshot in proxy.snapshots():
            if stats_interval:
                log.info("%s", format_snapshot(snapshot))
            key = (snapshot.link, snapshot.direction)
            behind = (snapshot.late_datagrams, snapshot.dropped.get("receive_overflow", 0))
            if behind != seen.get(key, (0, 0)):  # both only grow
                log.warning(
                    "%s %s: falling behind mission time: %d datagrams delivered late so far "
                    "(up to %.1f ms wall), %d lost to a full receive buffer; rate x time_scale "
                    "is more than this machine relays",
                    snapshot.link,
                    snapshot.direction,
                    snapshot.late_datagrams,
                    snapshot.max_lateness * 1000,
                    behind[1],
                )
            seen[key] = behind
