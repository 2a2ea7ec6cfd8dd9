"""dtn.scenario.report: report.json, junit.xml (against Jenkins' junit-10.xsd) and
timeline.png drawn from hand-built RunRecords."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import xmlschema

from dtn.scenario.record import (
    BundleRecord,
    ExpectationResult,
    FaultRecord,
    LinkRecord,
    RunRecord,
)
from dtn.scenario.report import write_reports

SCHEMA = Path(__file__).parent / "vectors" / "junit" / "junit-10.xsd"
LIGHT = 1200.0  # 20 min one way
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bundle(index: int, sent: float, *, forwarded: list[float] | None = None,
           delivered: list[float] | None = None, **extra) -> BundleRecord:
    return BundleRecord(key=f"telemetry#{index}", source="earth", destination="ipn:2.1",
                        size=100, sha256="ab" * 32, sent_at=sent, bundle_id=f"ipn:1.0-{index}",
                        forwarded=[sent] if forwarded is None else forwarded,
                        delivered=[sent + LIGHT] if delivered is None else delivered, **extra)


def record(*, faults: bool = True, passed: bool = False, bundles: list[BundleRecord] | None = None,
           duration: float = 7200.0) -> RunRecord:
    if bundles is None:
        bundles = [
            bundle(0, 0.0),
            bundle(1, 60.0, forwarded=[60.0, 2520.0, 5100.0], delivered=[6300.0]),
            bundle(2, 120.0, delivered=[]),
            BundleRecord(key="telemetry#3", source="earth", destination="ipn:2.1", size=100,
                         sha256="cd" * 32, sent_at=180.0, refused="store full"),
        ]
    windows = [(0.0, 4200.0), (5400.0, duration)] if faults else [(0.0, duration)]
    return RunRecord(
        scenario="earth-mars", mode="virtual", duration=duration, wall_seconds=1.25,
        bundles=bundles,
        links=[LinkRecord("earth-mars", "earth", "mars", LIGHT, windows, {"sent": 3})],
        faults=[FaultRecord(2400.0, "kill -9 mars"), FaultRecord(3600.0, "restart mars")]
        if faults else [],
        nodes={"earth": {"sent": 3}, "mars": {"delivered": 2}},
        expectations=[
            ExpectationResult("all delivered", passed, "4 delivered",
                              "4 delivered" if passed else "2 delivered",
                              "" if passed else "telemetry#2, telemetry#3"),
            ExpectationResult("exactly once", True, "0 duplicates", "0 duplicates"),
            ExpectationResult("latency", passed, "< 30 min", "20.0 min" if passed else "104 min"),
        ],
        logs={"earth": "/tmp/run/earth.log", "mars": "/tmp/run/mars.log"},
    )


def test_writes_the_three_reports_into_a_new_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    paths = write_reports(record(), out)
    assert paths == [out / "report.json", out / "junit.xml", out / "timeline.png"]
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)


def test_report_json_round_trips_with_the_derived_figures(tmp_path: Path) -> None:
    run = record()
    text = (write_reports(run, tmp_path)[0]).read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "scenario"')  # indent 2, keys in order
    document = json.loads(text)
    assert document == json.loads(json.dumps(run.as_json()))
    assert document["passed"] is False
    assert [b["retransmissions"] for b in document["bundles"]] == [0, 2, 0, 0]
    assert [b["latency"] for b in document["bundles"]] == [LIGHT, 6240.0, None, None]
    assert document["links"][0]["windows"] == [[0.0, 4200.0], [5400.0, 7200.0]]
    assert document["faults"][0] == {"at": 2400.0, "what": "kill -9 mars"}
    assert json.loads((write_reports(record(passed=True), tmp_path)[0]).read_text())["passed"]


def test_junit_validates_and_only_failures_carry_failure(tmp_path: Path) -> None:
    run = record()
    junit = write_reports(run, tmp_path)[1]
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "scenario earth-mars (virtual)"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped"), suite.get("time")) == ("3", "2", "0", "0", "1.250")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [e.name for e in run.expectations]
    assert {case.get("classname") for case in cases} == {"dtn.scenario.earth-mars"}
    failing = {case.get("name"): case.find("failure") for case in cases
               if case.find("failure") is not None}
    assert set(failing) == {"all delivered", "latency"}
    assert "measured 2 delivered" in failing["all delivered"].get("message")
    assert "telemetry#2" in failing["all delivered"].get("message")
    assert "measured 104 min" in failing["latency"].get("message")
    assert failing["latency"].get("type") == "expectation"
    assert "measured: 104 min" in failing["latency"].text
    system_out = suite.find("system-out").text
    assert "kill -9 mars" in system_out and "/tmp/run/mars.log" in system_out


def test_junit_of_a_passing_run_and_awkward_text_validates(tmp_path: Path) -> None:
    run = record(passed=True)
    run.scenario = "odd.name <&> \"quoted\""
    run.wall_seconds = 12345.67891
    run.expectations.append(
        ExpectationResult("ansi \x1b[31m & <tags>", True, "x", "y"))
    junit = write_reports(run, tmp_path)[1]
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("time") == "12345.679"
    assert suite.findall("testcase/failure") == []
    assert suite.findall("testcase")[-1].get("name") == "ansi \ufffd[31m & <tags>"
    assert suite.find("testcase").get("classname") == "dtn.scenario.odd_name_quoted_"


def test_junit_with_no_expectations_validates(tmp_path: Path) -> None:
    run = RunRecord(scenario="empty", mode="real", duration=0.0)
    junit = write_reports(run, tmp_path)[1]
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "0"


def image(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (600, 1200)  # 12 x 6 in at 100 dpi
    return pixels


def test_timeline_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    image(write_reports(record(), tmp_path)[2])


def test_faults_and_outages_change_the_timeline(tmp_path: Path) -> None:
    quiet = image(write_reports(record(faults=False), tmp_path / "quiet")[2])
    eventful = image(write_reports(record(faults=True), tmp_path / "eventful")[2])
    changed = np.any(np.abs(quiet[..., :3] - eventful[..., :3]) > 0.1, axis=-1)
    assert changed.sum() > 1000  # dashed fault lines, labels and shaded down-time


@pytest.mark.parametrize("duration", [0.0, 45.0, 7200.0, 3 * 86400.0])
def test_timeline_without_bundles(tmp_path: Path, duration: float) -> None:
    image(write_reports(record(bundles=[], duration=duration), tmp_path)[2])


def test_timeline_of_a_record_with_nothing_in_it(tmp_path: Path) -> None:
    image(write_reports(RunRecord(scenario="empty", mode="real", duration=0.0), tmp_path)[2])


def test_timeline_of_undelivered_duplicate_and_corrupt_bundles(tmp_path: Path) -> None:
    bundles = [bundle(0, 0.0, delivered=[]), bundle(1, 10.0, delivered=[1210.0, 1300.0]),
               bundle(2, 20.0, intact=False), bundle(3, 30.0, custody=[("mars", 1230.0)])]
    bundles.append(BundleRecord(key="reply#0", source="mars", destination="ipn:1.1", size=5,
                                sha256="ef" * 32, sent_at=1500.0, bundle_id="ipn:2.0-0",
                                delivered=[2700.0]))
    image(write_reports(record(bundles=bundles), tmp_path)[2])


def test_timeline_of_5000_bundles(tmp_path: Path) -> None:
    bundles = []
    for i in range(5000):
        sent, resent = i * 1.4, i % 7 == 0  # every 7th resent once, every 97th lost
        forwarded = [sent, sent + 2460.0] if resent else [sent]
        delivered = [] if i % 97 == 0 else [forwarded[-1] + LIGHT]
        bundles.append(bundle(i, sent, forwarded=forwarded, delivered=delivered))
    report, _, timeline = write_reports(record(bundles=bundles, duration=10200.0), tmp_path)
    image(timeline)
    assert len(json.loads(report.read_text())["bundles"]) == 5000
