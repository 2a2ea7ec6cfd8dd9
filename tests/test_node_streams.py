"""Two node daemons as real processes over each TCP convergence layer on 127.0.0.1: bundles
arrive once and intact, a killed node loses nothing, hostile connections are counted and
survived."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from node_helpers import receive_all
from tls_helpers import make_ca_and_cert

from dtn.client import AsyncClient, Client
from dtn.scenario.pair import stream_pair

LAYERS = ["mtcp", "stcp", "tcpcl3", "tcpcl4", "tcpcl4+tls"]


def _tls_lines(folder, cla: str) -> tuple[str, str]:
    """(cla, extra neighbour lines) for a layer name of LAYERS."""
    if cla != "tcpcl4+tls":
        return cla, ""
    paths = make_ca_and_cert(folder)
    return "tcpcl4", (
        f'tls = {{ certificate = "{paths.server_cert}", key = "{paths.server_key}", '
        f'ca = "{paths.ca_cert}", server_name = "localhost" }}'
    )


def _receive(path: str, endpoint: str, count: int, timeout: float) -> dict:
    """SHA-256 of each delivery by bundle id; a bundle delivered twice fails the test."""
    got = receive_all(path, endpoint, count, timeout)
    assert len({bundle_id for bundle_id, _ in got}) == len(got), "delivered twice"
    return {bundle_id: hashlib.sha256(data).digest() for bundle_id, data in got}


def _status_links(path: str) -> dict:
    with Client(path) as client:
        return client.status()["links"]


@pytest.mark.parametrize("layer", LAYERS)
def test_two_nodes_exchange_bundles_both_ways(tmp_path, layer):
    cla, extra = _tls_lines(tmp_path, layer)
    net, earth, mars = stream_pair(tmp_path, cla, neighbour=extra)
    with net:
        net.node("earth", earth)
        net.node("mars", mars)
        net.wait_ready()
        sent_to_mars, sent_to_earth = {}, {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(40):
                data = os.urandom(100 + i * 997) if i != 7 else os.urandom(3 << 20)
                sent_to_mars[client.send("ipn:2.1", data)] = hashlib.sha256(data).digest()
        with Client(net.socket("mars", "mars.sock")) as client:
            for i in range(10):
                data = b"reply %d" % i
                sent_to_earth[client.send("ipn:1.1", data)] = hashlib.sha256(data).digest()
        assert _receive(net.socket("mars", "mars.sock"), "ipn:2.1", 40, 60) == sent_to_mars
        assert _receive(net.socket("earth", "earth.sock"), "ipn:1.1", 10, 30) == sent_to_earth
        links = _status_links(net.socket("earth", "earth.sock"))
    assert links["mars"]["session"] is True
    assert links["mars"]["sessions_up"] >= 1


def test_kill_9_of_the_receiver_loses_nothing_over_tcpcl3(tmp_path):
    net, earth, mars = stream_pair(tmp_path, "tcpcl3", custody=False)
    with net:
        net.node("earth", earth)
        net.node("mars", mars)
        net.wait_ready()
        sent = {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(200):
                data = i.to_bytes(4, "big") * 5000
                sent[client.send("ipn:2.1", data)] = hashlib.sha256(data).digest()
        net.processes["mars"].kill()
        time.sleep(0.5)
        net.processes["mars"].start()
        net.processes["mars"].wait_ready()
        got = _receive(net.socket("mars", "mars.sock"), "ipn:2.1", 200, 60)
    # Without custody, only TCPCL's acknowledgements stand between a kill and a loss.
    assert set(got) == set(sent)


def _memory_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


async def _send_many(path: str, count: int, size: int) -> None:
    async with AsyncClient(path) as client:
        for start in range(0, count, 64):
            await asyncio.gather(*(client.send("ipn:2.1", os.urandom(size))
                                   for _ in range(min(64, count - start))))


def test_a_reconnecting_link_reads_no_more_of_the_store_than_it_can_queue(tmp_path):
    """120 MiB wait on Earth for Mars. When the session comes up, the agent reads as much as
    the layer may queue (16 MiB), not every stored bundle at once: before, Earth's memory grew
    by the whole backlog (and each megabyte cost its page faults)."""
    net, earth, mars = stream_pair(tmp_path, "mtcp", custody=False, security=False)
    count, size = 120, 1 << 20
    with net:
        net.node("earth", earth).wait_ready()
        asyncio.run(_send_many(net.socket("earth", "earth.sock"), count, size))
        pid = net.processes["earth"].popen.pid
        before = _memory_kib(pid, "VmRSS")
        net.node("mars", mars).wait_ready()
        got = _receive(net.socket("mars", "mars.sock"), "ipn:2.1", count, 60)
        grown_mib = (_memory_kib(pid, "VmHWM") - before) >> 10
    assert len(got) == count
    assert grown_mib < 80, f"Earth's memory grew by {grown_mib} MiB"


def _listen_port(config) -> int:
    return int(config.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])


@pytest.mark.parametrize("layer", ["mtcp", "stcp", "tcpcl3", "tcpcl4"])
def test_hostile_connections_are_closed_counted_and_survived(tmp_path, layer):
    net, earth, mars = stream_pair(tmp_path, layer)
    with net:
        net.node("earth", earth)
        net.node("mars", mars)
        net.wait_ready()
        port = _listen_port(mars)
        junk = [b"\xff" * 64, b"dtn!\x09\x00", b"\x5b" + b"\xff" * 8, b"\xff\xff\xff\xff"]
        flood = []
        for payload in junk * 3:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(payload)
            flood.append(sock)
        for _ in range(80):  # more connections than a listener holds open
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        with Client(net.socket("earth", "earth.sock")) as client:
            bundle_id = client.send("ipn:2.1", b"still here")
        got = _receive(net.socket("mars", "mars.sock"), "ipn:2.1", 1, 30)
        with Client(net.socket("mars", "mars.sock")) as client:
            cla_counters = client.status()["cla"]
        for sock in flood:
            sock.close()
    assert list(got) == [bundle_id]
    listener = next(v for k, v in cla_counters.items() if k.startswith(layer))
    link = cla_counters["link earth"]
    assert listener["evicted_idle"] > 0, cla_counters
    assert link["sessions_closed"] >= len(junk) * 3, cla_counters


# Short windows for the progress rule (twice the keepalive: 2 s), so each test takes seconds.
_FAST_KEEPALIVE = 'keepalive = "1s"'


def _contact_header(eid: str, flags: int, keepalive: int) -> bytes:
    raw = eid.encode()
    return b"dtn!" + bytes((3, flags)) + keepalive.to_bytes(2, "big") + bytes((len(raw),)) + raw


def _wait_for_counter(path: str, where: str, counter: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with Client(path) as client:
            counters = client.status()["cla"].get(where, {})
        if counters.get(counter) or time.monotonic() > deadline:
            return counters
        time.sleep(0.2)


def test_a_peer_trickling_a_data_segment_is_cut_off_and_the_node_goes_on(tmp_path):
    net, earth, mars = stream_pair(tmp_path, "tcpcl3", neighbour=_FAST_KEEPALIVE)
    with net:
        net.node("earth", earth)
        net.node("mars", mars)
        net.wait_ready()
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", _listen_port(mars))) as slow:
            # Keepalive 0 turns the idle rule off: only the progress rule can end this.
            slow.sendall(_contact_header("ipn:1.0", 0x01, 0))
            slow.settimeout(0.25)
            slow.sendall(b"\x13\x64")  # a DATA_SEGMENT of 100 bytes, start and end
            cut_after = None
            for _ in range(100):  # a byte every 0.25 s would take 25 s
                try:
                    slow.sendall(b"x")
                    while slow.recv(4096):  # the contact header, keepalives; b"" at the end
                        pass
                    cut_after = time.monotonic() - started
                    break
                except TimeoutError:
                    continue
                except OSError:  # reset after the node's close
                    cut_after = time.monotonic() - started
                    break
        with Client(net.socket("earth", "earth.sock")) as client:
            bundle_id = client.send("ipn:2.1", b"still here")
        got = _receive(net.socket("mars", "mars.sock"), "ipn:2.1", 1, 30)
        counters = _wait_for_counter(net.socket("mars", "mars.sock"), "link earth",
                                     "receive_stalled", 5)
    assert cut_after is not None and cut_after < 10, cut_after
    assert counters["receive_stalled"] == 1, counters
    assert "receive stalled" in (tmp_path / "mars.log").read_text()
    assert list(got) == [bundle_id]


def test_a_peer_that_never_acks_loses_the_session_and_the_bundles_go_out_later(tmp_path):
    net, earth, mars = stream_pair(tmp_path, "tcpcl3", neighbour=_FAST_KEEPALIVE, custody=False)
    port = _listen_port(mars)  # where earth connects to reach mars
    listener = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()
    received = []  # bytes each session of the never-acking receiver read
    sessions: list[threading.Thread] = []

    def never_ack(conn: socket.socket) -> None:
        conn.settimeout(0.3)
        conn.sendall(_contact_header("ipn:2.0", 0x01, 1))  # asks for ACKs, keepalive 1 s
        got = 0
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    got += len(data)
                except TimeoutError:
                    pass  # nothing came; the connection is still open
                except OSError:  # reset after the node's close
                    break
                try:
                    conn.sendall(b"\x40")  # KEEPALIVE: the connection is anything but idle
                except OSError:
                    break
        received.append(got)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            sessions.append(threading.Thread(target=never_ack, args=(conn,), daemon=True))
            sessions[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    with net:
        net.node("earth", earth)
        net.wait_ready()
        sent = {}
        with Client(net.socket("earth", "earth.sock")) as client:
            for i in range(5):
                data = os.urandom(2000 + i)
                sent[client.send("ipn:2.1", data)] = hashlib.sha256(data).digest()
        counters = _wait_for_counter(net.socket("earth", "earth.sock"), "link mars",
                                     "acks_stalled", 20)
        stop.set()
        for thread in [acceptor, *sessions]:
            thread.join()
        listener.close()
        assert counters.get("acks_stalled"), counters
        assert not counters.get("idle"), counters  # the keepalives flowed: not the idle rule
        assert "acknowledgement stalled" in (tmp_path / "earth.log").read_text()
        assert max(received, default=0) > 5 * 2000, received  # it had all five
        net.node("mars", mars)
        net.processes["mars"].wait_ready()
        got = _receive(net.socket("mars", "mars.sock"), "ipn:2.1", 5, 60)
    assert got == sent  # nothing lost, none twice
