"""`dtn keys`: make and inspect key files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import KeyringError
from .keyfile import KEY_SIZES_BITS, generate_key, load_keyring, write_keyring
from .keyring import Keyring, check_key_id


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="make and inspect key files")
    commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = commands.add_parser(
        "gen",
        help="add new random keys to a key file (created with mode 600)",
        description="Generate random keys and write them to a key file. A new file is created "
        "with mode 600; an existing one keeps its keys and gains the new ones.",
    )
    gen.add_argument("path", type=Path, help="key file (TOML)")
    gen.add_argument(
        "--id",
        dest="key_ids",
        action="append",
        required=True,
        metavar="KEY_ID",
        help="id of a key to generate (repeat for several)",
    )
    gen.add_argument(
        "--bits",
        type=int,
        default=256,
        choices=KEY_SIZES_BITS,
        help="key size (default 256: A256GCM, or a key-encryption key)",
    )
    gen.set_defaults(handler=_generate)
    show = commands.add_parser("list", help="list the key ids and sizes in a key file")
    show.add_argument("path", type=Path, help="key file (TOML)")
    show.set_defaults(handler=_list)


def _generate(args: argparse.Namespace) -> int:
    try:
        keyring = load_keyring(args.path) if args.path.exists() else Keyring()
        for key_id in args.key_ids:
            keyring = keyring.with_key(check_key_id(key_id), generate_key(args.bits))
        write_keyring(args.path, keyring)
    except (KeyringError, OSError) as exc:
        print(f"dtn keys gen: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {len(args.key_ids)} new {args.bits}-bit key(s) ({', '.join(args.key_ids)}) "
        f"to {args.path} (mode 600, {len(keyring)} keys in all)"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        keyring = load_keyring(args.path)
    except KeyringError as exc:
        print(f"dtn keys list: {exc}", file=sys.stderr)
        return 1
    for key_id in keyring:
        print(f"{key_id}\t{len(keyring.get(key_id)) * 8} bits")
    return 0
