"""Two node daemons as real processes over LTP (plain, and inside RS-coded frames) through the
link emulator: a 20-minute light time on a x1000 clock, loss and bit errors; what is sent
arrives once and intact, and only LTP (no custody) makes it so."""

from __future__ import annotations

import hashlib
import os

import pytest
from node_helpers import receive_all

from dtn.client import Client
from dtn.scenario.pair import earth_mars, start


@pytest.mark.parametrize(("cla", "ber", "loss"), [("ltp", 0.0, 0.02), ("ltp+rs", 1e-5, 0.03)])
def test_bundles_cross_a_20_minute_link_over_ltp(tmp_path, cla, ber, loss):
    net, earth, mars, emulator = earth_mars(
        tmp_path, light_time="20min", rate="2 Mbit/s", ber=ber, loss=loss,
        neighbour=f'cla = "{cla}"\ncustody = false',
    )
    with net:
        start(net, earth, mars, emulator)
        sent = {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(40):
                data = os.urandom(300 + i * 211) if i != 5 else os.urandom(300_000)
                sent[client.send("ipn:2.1", data)] = hashlib.sha256(data).digest()
        got = receive_all(net.socket("mars", "mars.sock"), "ipn:2.1", 40, 90)
        with Client(net.socket("earth", "earth.sock")) as client:
            link = client.status()["links"]["mars"]
    assert len({bundle_id for bundle_id, _ in got}) == len(got) == 40
    assert {bundle_id: hashlib.sha256(data).digest() for bundle_id, data in got} == sent
    assert link["blocks_out"] >= 1
    assert link["retransmitted_bytes"] > 0  # the channel lost segments: LTP sent them again
