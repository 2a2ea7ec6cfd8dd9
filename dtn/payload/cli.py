"""`dtn dict`: train and inspect Zstandard dictionaries for small payloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .dictionaries import (
    DEFAULT_DICTIONARY_SIZE,
    DictionaryError,
    dictionary_id,
    load_dictionary,
    save_dictionary,
    train_dictionary,
)

MAX_SAMPLE_BYTES = 256 << 20  # what training reads from all sample files together


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dict", help="train and inspect zstd dictionaries for small payloads"
    )
    commands = parser.add_subparsers(dest="dict_command", metavar="ACTION", required=True)
    train = commands.add_parser(
        "train",
        help="train a dictionary on sample records",
        description="Train a Zstandard dictionary on sample records, as they are sent one per "
        "bundle, and write it (mode 600: it holds pieces of the samples). Give both nodes the "
        "file: the sender compresses with it, the receiver needs it to decompress.",
    )
    train.add_argument("out", type=Path, help="dictionary file to write")
    train.add_argument(
        "samples", type=Path, nargs="+", metavar="SAMPLE", help="sample file: one sample each"
    )
    train.add_argument(
        "--lines",
        action="store_true",
        help="each line of each file (with its newline) is a sample; blank lines are skipped",
    )
    train.add_argument(
        "--size",
        type=int,
        default=DEFAULT_DICTIONARY_SIZE,
        help=f"largest dictionary size in bytes (default {DEFAULT_DICTIONARY_SIZE})",
    )
    train.set_defaults(handler=_train)
    info = commands.add_parser("info", help="show a dictionary file's id and size")
    info.add_argument("path", type=Path, help="dictionary file")
    info.set_defaults(handler=_info)


def _train(args: argparse.Namespace) -> int:
    try:
        samples = _read_samples(args.samples, args.lines)
        data = train_dictionary(samples, args.size)
        save_dictionary(args.out, data)
    except DictionaryError as exc:
        print(f"dtn dict train: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote dictionary {dictionary_id(data)} ({len(data)} bytes, trained on "
        f"{len(samples)} samples) to {args.out}"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        data = load_dictionary(args.path)
    except DictionaryError as exc:
        print(f"dtn dict info: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: zstd dictionary {dictionary_id(data)}, {len(data)} bytes")
    return 0


def _read_samples(paths: list[Path], lines: bool) -> list[bytes]:
    samples: list[bytes] = []
    budget = MAX_SAMPLE_BYTES
    for path in paths:
        try:
            with path.open("rb") as handle:
                data = handle.read(budget + 1)
        except OSError as exc:
            raise DictionaryError(f"cannot read sample file {path}: {exc.strerror}") from None
        if len(data) > budget:
            raise DictionaryError(f"the sample files hold more than {MAX_SAMPLE_BYTES} bytes")
        budget -= len(data)
        if lines:
            samples.extend(line for line in data.splitlines(keepends=True) if line.strip())
        else:
            samples.append(data)
    return samples
