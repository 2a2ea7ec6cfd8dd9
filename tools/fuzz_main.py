"""tools/fuzz: run one fuzz target (tools/fuzz_targets) under atheris/libFuzzer.

The parent process writes the target's seeds into its corpus directory, runs libFuzzer in a
child process (a crash or an out-of-memory ends libFuzzer's process) and reports inputs/s,
total inputs, crashes and peak RSS from libFuzzer's final statistics. Corpora and crash inputs
go under .fuzz/ (git-ignored); a crash input worth keeping goes to tests/vectors/fuzz/."""

from __future__ import annotations

import argparse
import dis
import hashlib
import operator
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools import fuzz_targets

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".fuzz"
RSS_LIMIT_MB = 2048
TIMEOUT_S = 10
# What is instrumented for coverage: dtn, and for some targets the pure-Python parsers dtn
# hands input to.
INSTRUMENTED = {"emulator_config": ("dtn", "tomllib")}
# The operand types whose comparisons atheris' hook turns into libFuzzer's value profile.
_GUIDED = (int, bytes, str)
_OPERATORS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
              ">": operator.gt, ">=": operator.ge}
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="the target (see --list)")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--time", type=int, metavar="S", help="stop after S seconds")
    parser.add_argument("--runs", type=int, metavar="N",
                        help="stop after N inputs (with --time: whichever comes first)")
    parser.add_argument("--max-len", type=int, default=None, metavar="B",
                        help="largest input (default: the largest seed, at least 4096 bytes)")
    parser.add_argument("--rss-limit-mb", type=int, default=RSS_LIMIT_MB,
                        help=f"a crash when resident memory passes this (default {RSS_LIMIT_MB})")
    return parser.parse_args()


def _write_seeds(name: str, corpus: Path) -> int:
    """The target's seeds as corpus files named by content; returns the largest seed's size."""
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = fuzz_targets.load(name).seeds()
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return max(map(len, seeds))


def _only_guided(traced: Callable[..., Any]) -> Callable[..., Any]:
    """A comparison hook that hands atheris' hook `traced` only the comparisons libFuzzer
    learns from and evaluates the rest itself. atheris 3.0.0's hook keeps a reference to every
    comparison result that is not a bool: numpy array comparisons in dtn.fec grew the process
    by about 4 kB an input (88 to 309 MB over 50 000 inputs)."""
    from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT

    operators = [_OPERATORS[symbol] for symbol in dis.cmp_op]

    def trace_cmp(left: object, right: object, opid: int, counter: int, is_const: bool) -> Any:
        kind = left.__class__
        if kind is right.__class__ and kind in _GUIDED:
            return traced(left, right, opid, counter, is_const)
        return operators[opid >> CMP_OP_SHIFT_AMOUNT](left, right)

    return trace_cmp


def _child(name: str, libfuzzer: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=list(INSTRUMENTED.get(name, ("dtn",)))):
        target = fuzz_targets.load(name)
        target.seeds()  # imports what the seeds need under instrumentation too
    hook = None

    def test_one_input(data: bytes) -> None:
        # Instrumented code looks the hook up as atheris._trace_cmp at every comparison, and
        # atheris.Fuzz() puts libFuzzer's there as it starts: it is wrapped from the first input.
        nonlocal hook
        if atheris._trace_cmp is not hook:
            hook = atheris._trace_cmp = _only_guided(atheris._trace_cmp)
        target.test_one_input(data)

    atheris.Setup([sys.argv[0], *libfuzzer], test_one_input)
    atheris.Fuzz()


def main() -> int:
    if sys.argv[1:2] == ["--child"]:  # tools.fuzz_main --child NAME LIBFUZZER_ARGS...
        _child(sys.argv[2], sys.argv[3:])
        return 0
    args = _arguments()
    if args.list:
        for name in fuzz_targets.NAMES:
            doc = (fuzz_targets.load(name).__doc__ or "").split("\n\n")[0]
            print(f"{name:16} {' '.join(doc.split())}")
        return 0
    if args.name is None:
        print("tools/fuzz: give a target name, or --list", file=sys.stderr)
        return 2
    corpus = WORK / "corpus" / args.name
    crashes = WORK / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    largest = _write_seeds(args.name, corpus)
    before = set(crashes.glob(f"{args.name}-*"))
    libfuzzer = [str(corpus), f"-rss_limit_mb={args.rss_limit_mb}", f"-timeout={TIMEOUT_S}",
                 f"-max_len={args.max_len or max(4096, largest)}", "-print_final_stats=1",
                 f"-artifact_prefix={crashes}/{args.name}-"]
    if args.time is not None:
        libfuzzer.append(f"-max_total_time={args.time}")
    if args.runs is not None:
        libfuzzer.append(f"-runs={args.runs}")
    command = [sys.executable, "-m", "tools.fuzz_main", "--child", args.name, *libfuzzer]
    log_path = WORK / f"{args.name}.log"
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                 errors="replace")
        for line in child.stderr:
            log.write(line)
            if not line.startswith("#"):  # progress lines stay in the log
                sys.stderr.write(line)
        code = child.wait()
    log_text = log_path.read_text()
    stats = {key: int(value) for key, value in _STAT.findall(log_text)}
    found = sorted(set(crashes.glob(f"{args.name}-*")) - before)
    print(f"\n{args.name}: {stats.get('average_exec_per_sec', 0)} inputs/s, "
          f"{stats.get('number_of_executed_units', 0)} inputs, {len(found)} crashes, "
          f"peak RSS {stats.get('peak_rss_mb', 0)} MB (libFuzzer exit {code}; log {log_path})")
    report = log_text.partition("=== Uncaught Python exception: ===")[2]
    for path in found:
        # Kept beside the input: the next run of the target overwrites its log.
        if report:
            path.with_name(path.name + ".txt").write_text(report)
        print(f"  crash input: {path}")
    return 1 if found or code else 0


if __name__ == "__main__":
    sys.exit(main())
