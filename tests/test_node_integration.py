"""Node daemons as real processes over real UDP through the emulator, on a scaled clock."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from dtn.api.service import ApiError
from dtn.client import Client
from tests.node_network import earth_mars, start


def _receive_all(path: str, endpoint: str, count: int, timeout: float) -> list:
    got = []
    deadline = time.monotonic() + timeout
    with Client(path) as client:
        client.register(endpoint)
        while len(got) < count and time.monotonic() < deadline:
            item = client.receive(timeout=max(0.1, deadline - time.monotonic()))
            if item is None:
                break
            got.append((item.bundle_id, item.data))
            client.ack(item)
    return got


def test_500_bundles_at_ber_1e5_and_2_percent_loss_arrive_once_intact(tmp_path):
    net, earth, mars, emulator = earth_mars(tmp_path, ber=1e-5, loss=0.02)
    with net:
        start(net, earth, mars, emulator)
        sent = {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(500):
                data = os.urandom(200 + (i * 37) % 3000)
                sent[client.send("ipn:2.1", data)] = hashlib.sha256(data).digest()
        got = _receive_all(net.socket("mars", "mars.sock"), "ipn:2.1", 500, 60)
        with Client(net.socket("earth", "earth.sock")) as client:
            status = client.status()
    ids = [bundle_id for bundle_id, _ in got]
    assert len(ids) == len(set(ids)) == 500
    assert {bundle_id: hashlib.sha256(data).digest() for bundle_id, data in got} == sent
    assert status["agent"]["retransmissions"] > 0  # the channel lost frames: custody made up


@pytest.mark.parametrize("victim", ["earth", "mars"])
def test_kill_9_mid_transfer_loses_nothing_and_delivers_once(tmp_path, victim):
    net, earth, mars, emulator = earth_mars(tmp_path, loss=0.01)
    with net:
        start(net, earth, mars, emulator)
        sent = {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(300):
                data = i.to_bytes(4, "big") * 300
                sent[client.send("ipn:2.1", data)] = data
        time.sleep(0.1)  # part of it is on the link, part in the sender's store
        net.processes[victim].kill()
        time.sleep(0.3)
        net.processes[victim].start()
        net.processes[victim].wait_ready()
        got = _receive_all(net.socket("mars", "mars.sock"), "ipn:2.1", 300, 60)
    ids = [bundle_id for bundle_id, _ in got]
    assert len(ids) == len(set(ids)), "a bundle was delivered twice"
    assert dict(got) == sent


def test_store_full_is_a_clear_error_and_keeps_what_is_stored(tmp_path):
    net, earth, mars, emulator = earth_mars(tmp_path, earth_store="max_bundles = 20")
    with net:
        net.emulator(emulator)
        net.node("earth", earth)  # Mars is not running: bundles stay in Earth's store
        net.wait_ready()
        accepted = []
        with Client(net.socket("earth", "earth.sock")) as client:
            with pytest.raises(ApiError) as refused:
                for i in range(30):
                    accepted.append(client.send("ipn:2.1", b"x%d" % i))
            assert refused.value.code == "store_full"
            assert "quota" in refused.value.message
            assert len(accepted) == 20
            stored = {row["bundle_id"] for row in client.bundles(100)}
            assert set(accepted) <= stored
        net.node("mars", mars)
        net.processes["mars"].wait_ready()
        got = _receive_all(net.socket("mars", "mars.sock"), "ipn:2.1", 20, 30)
    assert sorted(bundle_id for bundle_id, _ in got) == sorted(accepted)


def test_hostile_datagrams_and_api_requests_are_counted_and_survived(tmp_path):
    net, earth, mars, emulator = earth_mars(tmp_path)
    with net:
        start(net, earth, mars, emulator)
        mars_config = mars.read_text()
        listen = int(mars_config.split('listen = "127.0.0.1:')[1].split('"')[0])
        to_mars = int(earth.read_text().split('address = "127.0.0.1:')[1].split('"')[0])
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for size in (0, 1, 17, 1400, 9000):
            junk.sendto(os.urandom(size), ("127.0.0.1", listen))  # from an unknown address
            junk.sendto(os.urandom(size), ("127.0.0.1", to_mars))  # through the link
        junk.close()
        path = net.socket("mars", "mars.sock")
        for frame in (b"\xff\xff\xff\xff", struct.pack(">I", 5) + b"\xa1\x63op", b"\x00\x00"):
            raw = socket.socket(socket.AF_UNIX)
            raw.connect(path)
            raw.sendall(frame)
            raw.close()  # some of them mid-message
        threading.Event().wait(0.3)
        with Client(net.socket("earth", "earth.sock")) as client:
            bundle_id = client.send("ipn:2.1", b"still here")
        got = _receive_all(path, "ipn:2.1", 1, 20)
        with Client(path) as client:
            status = client.status()
        assert net.processes["mars"].running
    assert got == [(bundle_id, b"still here")]
    assert status["api"]["frames_bad"] + status["api"]["disconnects_midmessage"] >= 2
    dropped = sum(link["frames_dropped"].get("bad_marker", 0) + sum(link["frames_dropped"].values())
                  for link in status["links"].values())
    assert dropped > 0
