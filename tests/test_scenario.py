"""`dtn scenario run`: every shipped scenario in both modes, a failing expectation, bad files,
Ctrl-C, and the reports a CI system reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xmlschema

from dtn.scenario.config import load_scenario
from dtn.scenario.run_virtual import run_virtual

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))
JUNIT_SCHEMA = Path(__file__).parent / "vectors" / "junit" / "junit-10.xsd"
EXPECTED = {"nominal", "high-ber-bursts", "conjunction", "kill-restart", "relay-orbiter",
            "auto-light-time", "store-full", "unplanned-outage"}


def scenario_run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dtn.cli", "scenario", "run", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_every_kind_the_issue_names_is_shipped() -> None:
    assert {path.stem for path in SHIPPED} >= EXPECTED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_passes_on_virtual_time(path: Path, tmp_path: Path) -> None:
    record = run_virtual(load_scenario(path), tmp_path)
    failed = [result.line() for result in record.expectations if not result.passed]
    assert not failed, failed
    assert record.bundles and all(bundle.delivered for bundle in record.bundles)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_passes_between_real_processes(path: Path, tmp_path: Path) -> None:
    result = scenario_run(str(path), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["mode"] == "real"
    assert len(report["bundles"]) == report["planned"] > 0
    assert all(bundle["delivered"] for bundle in report["bundles"])
    xmlschema.XMLSchema(JUNIT_SCHEMA).validate(tmp_path / "junit.xml")
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"emulator.log", "earth.log"} <= {p.name for p in (tmp_path / "run").iterdir()}


def test_kill_and_restart_record_the_faults_and_lose_nothing(tmp_path: Path) -> None:
    record = run_virtual(load_scenario(ROOT / "scenarios" / "kill-restart.toml"), tmp_path)
    assert [fault.what for fault in record.faults] == [
        "kill -9 mars", "restart mars", "kill -9 earth", "restart earth"]
    assert len(record.bundles) == record.planned
    assert all(len(bundle.delivered) == 1 for bundle in record.bundles)


def test_a_full_store_refuses_sends_clearly_and_loses_nothing(tmp_path: Path) -> None:
    record = run_virtual(load_scenario(ROOT / "scenarios" / "store-full.toml"), tmp_path)
    assert record.faults[0].what.startswith("store of mars filled")
    refused = [bundle for bundle in record.bundles if bundle.refusals]
    assert refused and all(b.source == "mars" and b.refused is None for b in refused)
    assert record.nodes["earth"]["custody_refused"] > 0  # Mars could not take Earth's commands
    assert all(len(bundle.delivered) == 1 and bundle.intact for bundle in record.bundles)


def test_unplanned_cut_and_emulator_restart_are_bridged(tmp_path: Path) -> None:
    record = run_virtual(load_scenario(ROOT / "scenarios" / "unplanned-outage.toml"), tmp_path)
    assert [fault.what.split(" (")[0] for fault in record.faults] == [
        "contact earth-mars cut for 30 min", "emulator restarted"]
    counters = record.links[0].counters
    assert counters["a_to_b_dropped_link_down"] > 0 and counters["b_to_a_dropped_link_down"] > 0
    assert record.links[0].windows == [(0.0, 15 * 60.0), (45 * 60.0, record.duration)]
    assert all(len(bundle.delivered) == 1 for bundle in record.bundles)


EARTH_MARS = """
[[node]]
name = "earth"
number = 1
[[node]]
name = "mars"
number = 2
[[link]]
a = "earth"
b = "mars"
"""

APP = 'duration = "1h"' + EARTH_MARS + """
delay = "1min"
[[app]]
name = "status-check"
node = "earth"
run = ["python", "-c", "import sys; from dtn import Client; \
print(Client().status()['node_id']); sys.exit(3)"]
"""


def test_a_users_program_runs_beside_its_node_and_its_exit_status_counts(tmp_path: Path) -> None:
    scenario = tmp_path / "app.toml"
    scenario.write_text(APP)
    result = scenario_run(str(scenario), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "app status-check" in line)
    assert line.startswith("FAIL") and "measured exit 3" in line
    assert (tmp_path / "out" / "run" / "app-status-check.log").read_text().strip() == "ipn:1.0"
    virtual = scenario_run(str(scenario), "--virtual", "--out", str(tmp_path / "virtual"))
    assert virtual.returncode == 0 and "note  app status-check not run" in virtual.stdout


def test_light_time_from_the_ephemeris_bounds_every_delivery(tmp_path: Path) -> None:
    from dtn.config.units import parse_instant
    from dtn.ephemeris import earth_mars_light_time

    scenario = load_scenario(ROOT / "scenarios" / "auto-light-time.toml")
    record = run_virtual(scenario, tmp_path)
    light = earth_mars_light_time(parse_instant("2027-02-19T00:00:00Z", 0.0))
    assert 300 < light < 400  # near opposition: ~5.5 light minutes
    assert record.links[0].light_time == pytest.approx(light, rel=1e-6)
    for bundle in record.bundles:
        assert bundle.latency >= light - 1.0  # nothing is faster than light


FAILING = 'duration = "2h"' + EARTH_MARS + """
delay = "20min"
rate = "256 kbit/s"
loss = 0.05
[[traffic]]
name = "telemetry"
from = "mars"
to = "ipn:1.1"
count = 100
size = 2000
interval = "1s"
[expect]
max_retransmissions = 0
within_light_times = 1.01
"""


@pytest.mark.parametrize("mode", [["--virtual"], []], ids=["virtual", "real"])
def test_a_failing_expectation_fails_the_run_and_says_why(mode: list[str],
                                                          tmp_path: Path) -> None:
    scenario = tmp_path / "lossy.toml"
    scenario.write_text(FAILING)
    result = scenario_run(str(scenario), "--out", str(tmp_path / "out"), *mode)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    retransmissions = next(line for line in lines if "retransmissions:" in line)
    assert retransmissions.startswith("FAIL") and "expected <= 0, measured" in retransmissions
    assert int(retransmissions.split("measured ")[1].split()[0]) > 0
    assert "most: telemetry#" in retransmissions  # where to look
    failed = [line.split(":")[0][6:] for line in lines if line.startswith("FAIL  ")]
    assert {"within light times", "retransmissions"} <= set(failed)
    assert lines[-2].startswith("FAILED") and f"failed: {', '.join(failed)}" in lines[-2]
    junit = xmlschema.XMLSchema(JUNIT_SCHEMA).to_dict(tmp_path / "out" / "junit.xml")
    suite = junit["testsuite"][0]
    expectations = json.loads((tmp_path / "out" / "report.json").read_text())["expectations"]
    assert int(suite["@failures"]) == len(failed) and int(suite["@tests"]) == len(expectations)


@pytest.mark.parametrize("text, message", [
    ('duration = "1h"\n[[node]]\nname = "a"\nnumber = 1\n[[node]]\nname = "b"\nnumber = 2\n'
     '[[link]]\na = "a"\nb = "c"\n', "key `link[0].b`: expected a node's name (a, b), got 'c'"),
    ('duration = "1h"\nnode = []\nlink = []\nflux = 1\n', "unknown key `flux`"),
    ('duration = "soon"\nnode = []\nlink = []\n', "key `duration`: expected a duration"),
    ('duration = "1h"\n[[node]]\nname = "a"\nnumber = 1\n[[node]]\nname = "b"\nnumber = 2\n'
     '[[link]]\na = "a"\nb = "b"\n[[traffic]]\nname = "t"\nfrom = "a"\nto = "ipn:2.7"\n',
     "key `traffic[0].to`: 'ipn:2.7' is not in the endpoints of node 'b'"),
    ('duration = "1h"\n[[node]]\nname = "a"\nnumber = 1\n[[node]]\nname = "b"\nnumber = 2\n'
     '[[link]]\na = "a"\nb = "b"\n[[fault]]\nat = "1min"\naction = "kill"\n',
     "a kill fault names its `node`"),
])
def test_a_bad_scenario_file_is_one_line_and_exit_2(text: str, message: str,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = scenario_run(str(path), "--virtual", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr
    assert message in result.stderr


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "dtn.cli", "scenario", "run",
         str(ROOT / "scenarios" / "conjunction.toml"), "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    children: set[int] = set()
    while len(children) < 3 and time.monotonic() < deadline:  # two nodes and the emulator
        children = _children_of(runner.pid)
        time.sleep(0.1)
    assert len(children) == 3
    time.sleep(1.0)
    os.kill(runner.pid, signal.SIGINT)
    runner.wait(timeout=30)
    assert runner.returncode != 0
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "Z" in (
            Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0])
