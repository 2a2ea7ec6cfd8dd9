"""Large data between real node processes: a file above large_adu goes as fragments, is
reassembled into a file at the destination and arrives byte-identical, through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dtn.client import Client
from dtn.scenario.pair import earth_mars, file_sha256, start, write_science_file

SIZE = 200 << 20


def test_a_200_mb_file_goes_as_fragments_and_arrives_identical(tmp_path):
    # x1000: the machine, not the link, sets the pace; a lifetime of 1e6 mission seconds (1000 s
    # wall) keeps retransmitted fragments alive however long that takes
    net, earth, mars, emulator = earth_mars(
        tmp_path, rate="400 Mbit/s", loss=0.001,
        agent='large_adu = "8MiB"\nfragment_size = "1MiB"',
    )
    payload = tmp_path / "science.bin"
    expected = write_science_file(payload, SIZE >> 20)
    with net:
        start(net, earth, mars, emulator)
        out = tmp_path / "inbox"
        recv = subprocess.Popen([sys.executable, "-m", "dtn.cli", "recv", "--socket",
                                 net.socket("earth", "earth.sock"), "--endpoint", "ipn:1.1",
                                 "--out", str(out), "--count", "1", "--timeout", "240"],
                                stdout=subprocess.PIPE, text=True)
        send = subprocess.run([sys.executable, "-m", "dtn.cli", "send", "--socket",
                               net.socket("mars", "mars.sock"), "--to", "ipn:1.1",
                               "--lifetime", "1e6", str(payload)],
                              capture_output=True, text=True, timeout=240)
        assert send.returncode == 0, send.stderr
        assert recv.wait(240) == 0
        bundle_id, size, target = recv.stdout.read().split()
        with Client(net.socket("mars", "mars.sock")) as client:
            sent = client.status()
        with Client(net.socket("earth", "earth.sock")) as client:
            received = client.status()
    assert bundle_id == send.stdout.strip() and int(size) == SIZE
    assert file_sha256(Path(target)) == expected
    assert sent["agent"]["submitted"] >= (SIZE // 2) >> 20  # the random half: 1 MiB fragments
    assert received["agent"]["reassembled"] == 1
    payloads = tmp_path / "earth" / "earth.db.payloads"
    # acked: nothing left (an emptied segment file may stay, to be appended to)
    assert not payloads.exists() or [p for p in payloads.iterdir() if p.stat().st_size] == []
