"""The application commands: `dtn send`, `dtn recv`, `dtn status`, `dtn bundles`.

They talk to a running node through its API socket (`--socket`, default $DTN_API_SOCKET).
Errors are one line on stderr and a non-zero exit: 1 for a refusal by the node, 2 for usage,
3 when no node answers on the socket.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dtn.api.service import ApiError
from dtn.client import Client

_NO_NODE = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    def add(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--socket", help="the node's API socket (default $DTN_API_SOCKET)")
        parser.set_defaults(handler=lambda args: _guarded(handler, args))
        return parser

    send = add("send", "send a file, or standard input, as a bundle", _send)
    send.add_argument("--to", required=True, metavar="EID", help="destination endpoint")
    send.add_argument("file", nargs="?", default="-", help="file to send, or - (default)")
    send.add_argument("--lifetime", type=float, metavar="SECONDS", help="mission seconds")
    send.add_argument("--no-custody", action="store_true", help="forward without custody")
    send.add_argument("--priority", type=int, choices=(0, 1, 2), default=1)
    send.add_argument("--wait", action="store_true",
                      help="follow the bundle; exit 0 when its delivery report arrives")
    send.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="with --wait: give up after SECONDS of wall time (exit 1)")

    recv = add("recv", "receive bundles for an endpoint", _recv)
    recv.add_argument("--endpoint", required=True, metavar="EID")
    recv.add_argument("--out", type=Path, metavar="DIR",
                      help="write each payload to DIR/<bundle id> (default: standard output)")
    recv.add_argument("--count", type=int, metavar="N", help="stop after N bundles")
    recv.add_argument("--timeout", type=float, metavar="SECONDS",
                      help="stop after SECONDS of wall time without a bundle")

    status = add("status", "show the node's store, custody, links and counters", _status)
    status.add_argument("--json", action="store_true")
    bundles = add("bundles", "list the bundles the node stores", _bundles)
    bundles.add_argument("--json", action="store_true")
    bundles.add_argument("--limit", type=int, default=100)


def _guarded(handler, args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except ApiError as exc:
        print(f"dtn {args.command}: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"dtn {args.command}: {exc}", file=sys.stderr)
        return _NO_NODE
    except OSError as exc:
        print(f"dtn {args.command}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2


def _send(args: argparse.Namespace) -> int:
    with Client(args.socket) as client:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file)
        if isinstance(data, Path) and not data.is_file():
            raise FileNotFoundError(2, "no such file", str(data))
        bundle_id = client.send(args.to, data, lifetime=args.lifetime,
                                custody=not args.no_custody, priority=args.priority,
                                report=args.wait)
        print(bundle_id, flush=True)
        if not args.wait:
            return 0
        client.watch(bundle_id)
        return _follow(client, bundle_id, args.timeout)


def _follow(client: Client, bundle_id: str, timeout: float | None) -> int:
    """Print the bundle's progress in mission and wall time until it is delivered."""
    hello = client.hello()
    scale = hello["time_scale"]
    started_mission, started_wall = hello["now"], time.monotonic()
    light = max((link["light_time"] for link in client.status()["links"].values()), default=0)
    err = Console(stderr=True)
    err.print(f"following {bundle_id}: one-way light time {light / 60:.1f} min; a delivery "
              f"report needs at least {2 * light / 60:.1f} min of mission time "
              f"({2 * light / scale:.1f} s wall at x{scale:g})")
    deadline = None if timeout is None else started_wall + timeout
    while deadline is None or time.monotonic() < deadline:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        event = client.events(timeout=wait)
        if event is None:
            break
        mission = event.at - started_mission
        err.print(f"T+{mission / 60:7.2f} min mission ({time.monotonic() - started_wall:6.2f} s "
                  f"wall): {event.event} {event.detail}")
        if event.event == "delivered":
            return 0
        if event.event in ("expired", "deleted", "refused"):
            return 1
    err.print(f"no delivery report for {bundle_id} within {timeout} s")
    return 1


def _recv(args: argparse.Namespace) -> int:
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    received = 0
    with Client(args.socket) as client:
        client.register(args.endpoint)
        while args.count is None or received < args.count:
            item = client.receive(timeout=args.timeout)
            if item is None:
                break
            if args.out is None:
                item.write_to(sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                # Named by bundle ID: a repeat after a crash rewrites the same file.
                target = args.out / item.bundle_id.replace("/", "_").replace(":", "_")
                size = item.size
                item.save(target)
                print(f"{item.bundle_id} {size} {target}", flush=True)
            client.ack(item)
            received += 1
    return 0 if args.count is None or received == args.count else 1


def _status(args: argparse.Namespace) -> int:
    with Client(args.socket) as client:
        status = client.status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    console = Console()
    store = status["store"]
    console.print(f"[bold]{status['node_id']}[/]: {store['bundles']} bundles stored "
                  f"({store['bytes']:,} B), custody in flight {status['custody_in_flight']}")
    links = Table("link", "up", "rate bit/s", "light time s", "queued B", "bundles out",
                  "bundles in", "frames corrected", title="links")
    for name, link in status["links"].items():
        links.add_row(name, "yes" if link["up"] else "no", f"{link['rate_bps'] or 0:,.0f}",
                      f"{link['light_time']:.1f}", str(link["queued_bytes"]),
                      str(link["bundles_out"]), str(link["bundles_in"]),
                      str(link["frames_corrected"]))
    console.print(links)
    counters = Table("counter", "value", title="agent")
    for name, value in sorted(status["agent"].items()):
        counters.add_row(name, str(value))
    console.print(counters)
    return 0


def _bundles(args: argparse.Namespace) -> int:
    with Client(args.socket) as client:
        rows = client.bundles(args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("bundle id", "state", "next hop", "size", "priority")
    for row in rows:
        table.add_row(row["bundle_id"], row["state"], row["next_hop"] or "-", str(row["size"]),
                      str(row["priority"]))
    Console().print(table)
    return 0
