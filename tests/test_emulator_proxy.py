"""The UDP proxy with real sockets on 127.0.0.1 and a scaled clock, and `dtn emulate` as a real
subprocess."""

import asyncio
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from dtn.emulator.cli import READY_MESSAGE
from dtn.emulator.config import load_config, parse_config
from dtn.emulator.proxy import EARLY_SEND, EmulatorProxy
from dtn.emulator.stats import render_prometheus
from dtn.metrics_http import serve_metrics

CONFIGS = Path(__file__).parent.parent / "configs"
SCALE = 1000.0


def node_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def link_config(a_node, b_node, channel: str = "", emulator: str = "") -> str:
    return (
        f"seed = 4\n[clock]\ntime_scale = {SCALE}\nepoch = {time.time()}\n"
        f"[emulator]\n{emulator}\n[[link]]\n"
        'name = "test"\n'
        f'a = {{ name = "earth", node = "127.0.0.1:{a_node[1]}", listen = "127.0.0.1:0" }}\n'
        f'b = {{ name = "mars", node = "127.0.0.1:{b_node[1]}", listen = "127.0.0.1:0" }}\n'
        + channel
    )


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it


async def receive_all(sock: socket.socket, count: int, timeout: float) -> list[tuple[float, bytes]]:
    """(arrival time, datagram) for up to `count` datagrams or until `timeout` passes.

    A thread reads, so the datagrams are taken off the socket while the proxy works, and the
    arrival time is the kernel's receive timestamp, not when the test got around to it.
    """
    return await asyncio.to_thread(_receive_blocking, sock, count, timeout)


def _receive_blocking(sock: socket.socket, count: int, timeout: float):
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    received = []
    deadline = time.time() + timeout
    while len(received) < count and (left := deadline - time.time()) > 0:
        sock.settimeout(left)
        try:
            data, ancillary, _, _ = sock.recvmsg(65535, 64)
        except TimeoutError:
            break
        seconds, nanoseconds = struct.unpack("qq", ancillary[0][2][:16])
        received.append((seconds + nanoseconds / 1e9, data))
    sock.setblocking(False)
    return received


def run_with_proxy(config, scenario):
    """Run `scenario(proxy)` in an event loop beside a started proxy."""

    async def main():
        proxy = EmulatorProxy(config)
        proxy.start()
        try:
            return await scenario(proxy)
        finally:
            proxy.close()

    return asyncio.run(main())


def test_ci_link_delivers_twenty_minutes_later_in_scaled_time_both_ways():
    earth, mars = node_socket(), node_socket()
    shipped = load_config(CONFIGS / "earth-mars-ci.toml")
    [link] = shipped.links
    noiseless = replace(link.a_to_b, ber=0.0, loss=0.0)
    config = replace(
        shipped,
        epoch=time.time(),
        links=(
            replace(
                link,
                a=replace(link.a, node=earth.getsockname(), listen=("127.0.0.1", 0)),
                b=replace(link.b, node=mars.getsockname(), listen=("127.0.0.1", 0)),
                a_to_b=noiseless,
                b_to_a=noiseless,
            ),
        ),
    )
    expected = 1200.0 / config.time_scale  # 20 minutes at x1000: 1.2 s

    async def scenario(proxy):
        to_mars = proxy.listen_address("earth-mars", "a")
        to_earth = proxy.listen_address("earth-mars", "b")
        sent = {}
        for i in range(20):
            payload = f"hello mars {i}".encode()
            sent[payload] = time.time()
            earth.sendto(payload, to_mars)
            mars.sendto(b"hello earth", to_earth)
            await asyncio.sleep(0.005)
        at_mars, at_earth = await asyncio.gather(
            receive_all(mars, 20, expected + 2), receive_all(earth, 20, expected + 2)
        )
        return sent, at_mars, at_earth, proxy.snapshots()

    sent, at_mars, at_earth, snapshots = run_with_proxy(config, scenario)
    assert [data for _, data in at_mars] == list(sent)  # all, in order
    assert len(at_earth) == 20
    errors = [arrived - sent[data] - expected for arrived, data in at_mars]
    # Never early (beyond the batching allowance), and on time within a few milliseconds.
    assert min(errors) > -EARLY_SEND - 0.001
    assert statistics.median(errors) < 0.005
    earth_to_mars = next(s for s in snapshots if s.direction == "earth->mars")
    assert (earth_to_mars.datagrams_in, earth_to_mars.datagrams_out) == (20, 20)
    assert earth_to_mars.in_flight_datagrams == 0
    assert earth_to_mars.light_time == 1200.0


def test_source_address_is_the_proxy_port_the_receiver_replies_to():
    earth, mars = node_socket(), node_socket()
    config = parse_config(link_config(earth.getsockname(), mars.getsockname()))

    async def scenario(proxy):
        earth.sendto(b"ping", proxy.listen_address("test", "a"))
        loop = asyncio.get_running_loop()
        data, source = await asyncio.wait_for(loop.sock_recvfrom(mars, 100), 5)
        mars.sendto(b"pong", source)
        reply = await asyncio.wait_for(loop.sock_recv(earth, 100), 5)
        return data, source, reply, proxy.listen_address("test", "b")

    data, source, reply, b_listen = run_with_proxy(config, scenario)
    assert (data, reply) == (b"ping", b"pong")
    assert source == b_listen


def test_rate_cap_holds_in_wall_time():
    earth, mars = node_socket(), node_socket()
    mission_rate = 1000  # bit/s: 1 Mbit/s of wall time at x1000, so 1000 B take 8 ms
    config = parse_config(
        link_config(earth.getsockname(), mars.getsockname(), f"rate = {mission_rate}\n")
    )
    size, count = 1000, 40
    serialization = size * 8 / (mission_rate * SCALE)

    async def scenario(proxy):
        started = time.time()
        for _ in range(count):
            earth.sendto(bytes(size), proxy.listen_address("test", "a"))
        return started, await receive_all(mars, count, 5)

    started, received = run_with_proxy(config, scenario)
    assert len(received) == count
    for index, (arrived, _) in enumerate(received):
        # The i-th datagram of a burst cannot be through before i+1 serialization times.
        assert arrived - started >= (index + 1) * serialization - EARLY_SEND - 0.001


def test_contact_windows_gate_traffic():
    earth, mars = node_socket(), node_socket()
    # Mission seconds after the epoch; at x1000 a window of 200 s lasts 0.2 s.
    channel = "contacts = { windows = [{ start = 0, end = 200 }, { start = 400, end = 600 }] }\n"
    config = parse_config(link_config(earth.getsockname(), mars.getsockname(), channel))

    async def scenario(proxy):
        sent = []
        start = time.time()
        while time.time() - start < 0.7:
            payload = repr(time.time()).encode()
            earth.sendto(payload, proxy.listen_address("test", "a"))
            sent.append(payload)
            await asyncio.sleep(0.01)
        received = await receive_all(mars, len(sent), 0.5)
        return sent, {data for _, data in received}, proxy.snapshots()

    sent, delivered, snapshots = run_with_proxy(config, scenario)
    for payload in sent:
        mission = (float(payload) - config.epoch) * SCALE  # seconds after the epoch
        if min(abs(mission - edge) for edge in (0, 200, 400, 600)) < 40:
            continue  # too close to an edge to say which side of it the proxy saw
        assert (payload in delivered) == (mission < 200 or 400 < mission < 600), mission
    dropped = snapshots[0].dropped["link_down"]
    assert dropped == len(sent) - len(delivered) and dropped > 10


def test_spooled_datagrams_arrive_complete_and_in_order(tmp_path):
    earth, mars = node_socket(), node_socket()
    mars.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # the kernel may give less
    config = parse_config(
        link_config(
            earth.getsockname(),
            mars.getsockname(),
            'delay = "5min"\n',
            f'memory_cap = "16KiB"\nspool_dir = "{tmp_path}"\n',
        )
    )
    payloads = [i.to_bytes(4, "big") * 250 for i in range(2000)]  # 2 MB

    async def scenario(proxy):
        target = proxy.listen_address("test", "a")
        for i, payload in enumerate(payloads):
            earth.sendto(payload, target)
            while i % 20 == 19 and proxy.snapshots()[0].datagrams_in <= i:
                await asyncio.sleep(0.001)  # let the proxy take them off its socket
        in_flight = proxy.snapshots()[0]
        received = await receive_all(mars, len(payloads), 5)
        return in_flight, received, proxy.snapshots()[0]

    in_flight, received, after = run_with_proxy(config, scenario)
    assert in_flight.spooled_bytes > 1_500_000
    assert [data for _, data in received] == payloads
    assert after.datagrams_out == len(payloads) and after.in_flight_bytes == 0
    assert list(tmp_path.iterdir()) == []


def test_metrics_endpoint_serves_prometheus_text():
    earth, mars = node_socket(), node_socket()
    config = parse_config(link_config(earth.getsockname(), mars.getsockname(), "loss = 1.0\n"))

    async def get(address, path):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = await reader.read()
        writer.close()
        return response.decode()

    async def scenario(proxy):
        for _ in range(3):
            earth.sendto(b"lost in space", proxy.listen_address("test", "a"))
        await asyncio.sleep(0.05)
        server = await serve_metrics(("127.0.0.1", 0), lambda: render_prometheus(proxy.snapshots()))
        address = server.sockets[0].getsockname()
        try:
            return await get(address, "/metrics"), await get(address, "/")
        finally:
            server.close()

    metrics, other = run_with_proxy(config, scenario)
    assert metrics.startswith("HTTP/1.1 200 OK")
    assert 'dtn_emulator_datagrams_in_total{link="test",direction="earth->mars"} 3' in metrics
    assert (
        'dtn_emulator_datagrams_dropped_total{link="test",direction="earth->mars",reason="loss"} 3'
        in metrics
    )
    assert "# TYPE dtn_emulator_in_flight_bytes gauge" in metrics
    assert other.startswith("HTTP/1.1 404")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dtn_emulate_relays_logs_and_prints_counters_at_exit(tmp_path):
    earth, mars = node_socket(), node_socket()
    mars.setblocking(True)
    mars.settimeout(10)
    listen = free_port()
    config = tmp_path / "link.toml"
    config.write_text(
        link_config(earth.getsockname(), mars.getsockname(), 'delay = "1min"\n').replace(
            'listen = "127.0.0.1:0" }\nb', f'listen = "127.0.0.1:{listen}" }}\nb'
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dtn.cli", "emulate", "-c", str(config), "--stats-interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        log = []
        while READY_MESSAGE not in "".join(log):
            line = process.stderr.readline()
            assert line, "".join(log)
            log.append(line)
        for _ in range(5):
            earth.sendto(b"over the proxy", ("127.0.0.1", listen))
        assert [mars.recv(100) for _ in range(5)] == [b"over the proxy"] * 5
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "test earth->mars: in 5 out 5 dropped 0" in stdout
    assert "test earth->mars: in 5 out 5" in stderr  # the periodic stats log


def test_dtn_emulate_names_a_busy_port_on_one_line(tmp_path):
    earth, mars = node_socket(), node_socket()
    busy = node_socket()
    port = busy.getsockname()[1]
    config = tmp_path / "link.toml"
    config.write_text(
        link_config(earth.getsockname(), mars.getsockname()).replace(
            'listen = "127.0.0.1:0" }\nb', f'listen = "127.0.0.1:{port}" }}\nb'
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "dtn.cli", "emulate", "-c", str(config), "--log-level", "ERROR"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port} (link 'test' side a)" in result.stderr


def test_datagrams_the_kernel_drops_for_a_full_receive_buffer_are_counted():
    earth, mars = node_socket(), node_socket()
    config = parse_config(link_config(earth.getsockname(), mars.getsockname(), 'delay = "1h"\n'))

    async def scenario(proxy):
        sent = 0
        for _ in range(2000):  # 16 MB while the proxy cannot read: more than its buffer holds
            try:
                earth.sendto(bytes(8000), proxy.listen_address("test", "a"))
                sent += 1
            except BlockingIOError:
                pass
        await asyncio.sleep(0.2)
        return sent, proxy.snapshots()[0]

    sent, snapshot = run_with_proxy(config, scenario)
    overflow = snapshot.dropped["receive_overflow"]
    assert overflow > 0
    assert snapshot.datagrams_in + overflow == sent
