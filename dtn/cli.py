"""The `dtn` command.

Each subsystem owns its subcommands: a module listed in COMMAND_MODULES defines
`register(subparsers)`, which adds its parsers and sets `handler=` on them. The handler gets the
parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dtn import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "dtn.node.cli",
    "dtn.api.cli",
    "dtn.emulator.cli",
    "dtn.payload.cli",
    "dtn.security.cli",
    "dtn.scenario.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtn", description="Delay-tolerant networking stack")
    parser.add_argument("--version", action="version", version=f"dtn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
