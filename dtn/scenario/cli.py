"""`dtn scenario run FILE.toml [--out DIR] [--virtual]`: run an Earth–Mars scenario, judge its
expectations, write report.json, junit.xml and timeline.png (docs/scenarios.md).

Exit status: 0 every expectation held; 1 one failed (each is printed with its figure and where
to look); 2 the scenario file is wrong (one line naming the file and key); 3 the run could not
be carried out (a process did not start or died: its log is quoted).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from dtn.config.schema import ConfigError
from dtn.scenario.config import load_scenario
from dtn.scenario.processes import ProcessError
from dtn.scenario.record import RunRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scenario",
        help="run Earth–Mars scenarios with expectations (for CI)",
        description="Run Earth–Mars scenarios: real node and emulator processes on a scaled "
        "clock, or the cores on virtual time (see docs/scenarios.md).",
    )
    commands = parser.add_subparsers(dest="scenario_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a scenario and judge its expectations",
        description="Run a scenario file, judge its expectations and write report.json, "
        "junit.xml and timeline.png. Exit 0 when every expectation held, 1 when one failed, "
        "2 for a bad scenario file, 3 when the run could not be carried out.",
    )
    run.add_argument("file", type=Path, help="scenario TOML file")
    run.add_argument("--out", type=Path, help="folder for the reports and the processes' logs "
                     "and stores (default: ./scenario-NAME)")
    run.add_argument("--virtual", action="store_true",
                     help="run the cores in this process on virtual time instead of real "
                     "processes (seconds instead of minutes; no API, no payload pipeline)")
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.file)
    except ConfigError as error:
        print(f"dtn scenario: {error}", file=sys.stderr)
        return 2
    out = args.out or Path(f"scenario-{scenario.name}")
    work = out / "run"  # configs, stores and logs of this run; the last run's only
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    mode = "virtual time" if args.virtual else f"real processes at x{scenario.file.time_scale:g}"
    print(f"scenario {scenario.name} ({mode}): {scenario.file.description}".rstrip(": "),
          flush=True)
    try:
        if args.virtual:
            from dtn.scenario.run_virtual import run_virtual

            record = run_virtual(scenario, work)
        else:
            from dtn.scenario.run_real import run_real

            record = run_real(scenario, work)
    except (ProcessError, RuntimeError) as error:
        print(f"dtn scenario: the run failed: {error} (logs in {work})", file=sys.stderr)
        return 3
    except ConfigError as error:
        print(f"dtn scenario: {error}", file=sys.stderr)
        return 2
    from dtn.scenario.report import write_reports

    written = write_reports(record, out)
    print(summary(record))
    print(f"reports: {', '.join(str(path) for path in written)}; logs and stores in {work}")
    return 0 if record.passed else 1


def summary(record: RunRecord) -> str:
    delivered = record.delivered_count
    lines = [f"      t+{fault.at / 60:7.1f} min  {fault.what}" for fault in record.faults]
    lines += [f"note  {note}" for note in record.notes]
    lines += [line.line() for line in record.expectations]
    verdict = "PASSED" if record.passed else "FAILED"
    failed = [r.name for r in record.expectations if not r.passed]
    lines.append(f"{verdict}: {delivered} of {len(record.bundles)} bundles delivered in "
                 f"{record.duration / 60:.1f} min of mission time ({record.wall_seconds:.1f} s "
                 f"wall)" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)
