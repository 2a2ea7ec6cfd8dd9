"""`dtn node run -c FILE`: run a node daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from dtn.allocator import keep_freed_memory
from dtn.api.server import ApiServer
from dtn.config import ConfigError, load_node_config
from dtn.metrics_http import serve_metrics
from dtn.store import StoreError

from .daemon import Node
from .logs import log_event, setup_logging
from .metrics import render_metrics

READY_MESSAGE = "node ready"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("node", help="run a node daemon",
                                   description="Run a DTN node daemon (see docs/config.md).")
    commands = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    run_parser = commands.add_parser("run", help="run the node of a config file until stopped")
    run_parser.add_argument("-c", "--config", type=Path, required=True, help="node TOML config")
    run_parser.add_argument("--data-dir", type=Path,
                            help="folder for relative store and socket paths (default: "
                            "$DTN_DATA_DIR, else the config file's folder)")
    run_parser.add_argument("--log-format", choices=("text", "json"),
                            help="default: the config's [log] format")
    run_parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                            help="default: the config's [log] level")
    run_parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()
    try:
        config = load_node_config(args.config, args.data_dir)
        log_table = config.file.log
        log = setup_logging(args.log_format or log_table.format, args.log_level or log_table.level)
        node = Node(config, log)
    except (ConfigError, StoreError) as error:
        print(f"dtn node: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(node))
    except OSError as error:
        print(f"dtn node: {error}", file=sys.stderr)
        return 1
    return 0


async def _serve(node: Node) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    api = node.config.file.api
    server = ApiServer(node.config.api_socket, node, mode=api.mode, max_message=api.max_message)
    metrics = None
    try:
        await node.start()
        await server.start()
        address = node.config.file.metrics.address
        if address is not None:
            metrics = await serve_metrics(address, lambda: render_metrics(node, server))
        # Printed whatever the log level: launchers wait for this line.
        print(f"{READY_MESSAGE}: {node.node_id}, API at {node.config.api_socket}, time_scale "
              f"{node.clock.time_scale:g}", file=sys.stderr, flush=True)
        await stop.wait()
        log_event(node.log, "stopping", "signal received")
    finally:
        if metrics is not None:
            metrics.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        node.close()
