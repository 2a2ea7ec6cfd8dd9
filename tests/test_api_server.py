"""ApiServer with both clients over a real Unix socket.

The Service here is a tiny dict-backed stand-in, acceptable only because the real node
(dtn/node) is being built at the same time; the node's integration tests replace it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import stat
import struct
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import dtn
from dtn.api.protocol import MessageReader, encode_message
from dtn.api.server import ApiServer
from dtn.api.service import ApiError, Delivery, SendRequest, Sink


class DictService:
    """Honest in-memory node: bundles wait until a registered client acks them."""

    def __init__(self) -> None:
        self.bundles_: dict[str, tuple[str, bytes, str]] = {}  # id -> (destination, data, source)
        self.waiting: list[str] = []  # bundle ids not delivered to anyone
        self.sinks: dict[str, Sink] = {}  # endpoint -> sink
        self.unacked: dict[int, tuple[Sink, str]] = {}
        self.next_delivery = 1
        self.streamed: list[tuple[int, str]] = []  # (size, sha256) of streamed sends
        self.disconnects = 0
        self.count = 0
        self.gate: asyncio.Event | None = None  # if set, streams wait on it after each chunk
        self.commit: asyncio.Event | None = None  # if set, sends wait on it (a store commit)
        self.store_seconds = 0.0  # a streamed send's time to store the whole stream
        self.chunks_taken = 0

    def hello(self) -> dict:
        return {"node_id": "ipn:2.0", "version": 1, "time_scale": 1.0, "epoch": 0.0}

    def _new_id(self) -> str:
        self.count += 1
        return f"ipn:1.0/{self.count}"

    async def send(self, request: SendRequest) -> str:
        if request.destination == "ipn:99.1":
            raise ApiError("store_full", "full")
        bundle_id = self._new_id()
        self.bundles_[bundle_id] = (request.destination, request.data, request.source or "ipn:1.0")
        self.waiting.append(bundle_id)
        self._pump()
        if self.commit is not None:
            await self.commit.wait()
        return bundle_id

    async def send_stream(self, request: SendRequest, chunks: AsyncIterator[bytes]) -> str:
        digest, size = hashlib.sha256(), 0
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            self.chunks_taken += 1
            if self.gate is not None:
                await self.gate.wait()
                self.gate.clear()
        await asyncio.sleep(self.store_seconds)
        self.streamed.append((size, digest.hexdigest()))
        return self._new_id()

    def _pump(self) -> None:
        for bundle_id in list(self.waiting):
            destination, data, source = self.bundles_[bundle_id]
            sink = self.sinks.get(destination)
            if sink is None:
                continue
            self.waiting.remove(bundle_id)
            delivery = self.next_delivery
            self.next_delivery += 1
            self.unacked[delivery] = (sink, bundle_id)
            sink.deliver(Delivery(destination, delivery, bundle_id, source, data, 1000.0))

    def register(self, endpoint: str, sink: Sink) -> None:
        if not endpoint.startswith("ipn:"):
            raise ApiError("bad_endpoint", endpoint)
        self.sinks[endpoint] = sink
        self._pump()

    def unregister(self, endpoint: str, sink: Sink) -> None:
        if self.sinks.get(endpoint) is sink:
            del self.sinks[endpoint]

    def ack(self, sink: Sink, delivery: int) -> None:
        owner = self.unacked.get(delivery)
        if owner is None or owner[0] is not sink:
            raise ApiError("not_found", f"delivery {delivery}")
        del self.unacked[delivery]
        del self.bundles_[owner[1]]

    def watch(self, bundle_id: str, sink: Sink) -> None:
        if bundle_id not in self.bundles_:
            raise ApiError("not_found", bundle_id)
        sink.event(bundle_id, "custody_accepted", 1000.0, "stored")

    def status(self) -> dict:
        return {"stored": len(self.bundles_)}

    def bundles(self, limit: int) -> list[dict]:
        return [{"bundle_id": b} for b in list(self.bundles_)[:limit]]

    def disconnected(self, sink: Sink) -> None:
        self.disconnects += 1
        for endpoint in [e for e, s in self.sinks.items() if s is sink]:
            del self.sinks[endpoint]
        for delivery, (owner, bundle_id) in list(self.unacked.items()):
            if owner is sink:
                del self.unacked[delivery]
                self.waiting.append(bundle_id)  # un-acked: waits for the next client


class Node:
    """An ApiServer on its own event loop thread, so blocking clients can run in the test."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        self.path = path
        self.service = DictService()
        self.loop = asyncio.new_event_loop()
        self.server = ApiServer(path, self.service, **kwargs)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start)

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn (sync or coroutine function) on the server's loop and wait for it."""

        async def run() -> object:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.call(condition):
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.01)

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        self.call(close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "node.sock", max_message=4 << 20)
    yield n
    n.stop()


def raw(node: Node) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(node.path))
    return s


def read_all(s: socket.socket) -> list[dict]:
    """Messages until the server closes the connection."""
    reader, out = MessageReader(), []
    while data := s.recv(65536):
        out += reader.feed(data)
    return out


def test_socket_mode_is_0600(node: Node) -> None:
    assert stat.S_IMODE(os.stat(node.path).st_mode) == 0o600


def test_blocking_round_trip(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as app, dtn.Client(node.path, timeout=10) as peer:
        assert app.hello()["node_id"] == "ipn:2.0"
        assert app.hello()["max_message"] == 4 << 20
        bundle_id = peer.send("ipn:2.1", b"hello mars", lifetime=60, priority=2)
        assert app.receive(timeout=0.05) is None  # not registered yet
        app.register("ipn:2.1")
        received = app.receive(timeout=10)
        assert received is not None
        assert (received.bundle_id, received.data, received.endpoint) == (
            bundle_id, b"hello mars", "ipn:2.1")
        assert app.status()["stored"] == 1  # not gone before the ack
        received.ack()
        assert app.status()["stored"] == 0
        with pytest.raises(ApiError) as info:
            app.ack(received.delivery)
        assert info.value.code == "not_found"


def test_pushes_during_a_request_are_queued(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as app:
        app.register("ipn:2.1")
        ids = [app.send("ipn:2.1", bytes([i])) for i in range(5)]  # pushes arrive mid-request
        assert [r.bundle_id for r in app.deliveries(timeout=0.2)] == ids


def test_async_round_trip_and_events(node: Node) -> None:
    async def main() -> None:
        async with dtn.AsyncClient(node.path, timeout=10) as app:
            peer = await dtn.AsyncClient.connect(node.path, timeout=10)
            await app.register("ipn:2.5")
            bundle_id = await peer.send("ipn:2.5", b"x" * 1000, custody=False)
            await peer.watch(bundle_id)
            event = await peer.events(timeout=10)
            assert event is not None and (event.bundle_id, event.event) == (
                bundle_id, "custody_accepted")
            async for received in app.deliveries(timeout=10):
                assert (received.bundle_id, received.data) == (bundle_id, b"x" * 1000)
                await received.ack()
                break
            assert (await app.status())["stored"] == 0
            assert await app.bundles() == []
            with pytest.raises(ApiError) as info:
                await app.register("dtn-none")
            assert info.value.code == "bad_endpoint"
            with pytest.raises(ApiError) as info:
                await app.send("ipn:99.1", b"")
            assert info.value.code == "store_full"
            await peer.close()

    asyncio.run(main())


def test_async_acks_of_one_turn_go_as_one_request(node: Node) -> None:
    async def main() -> None:
        async with dtn.AsyncClient(node.path, timeout=10) as app:
            await app.register("ipn:2.1")
            for i in range(5):
                await app.send("ipn:2.1", bytes([i]), custody=False)
            got = [await app.receive(timeout=10) for _ in range(5)]
            assert all(r is not None for r in got)
            before = (await app.status())["api"].get("requests_ack", 0)
            stale = got[0].delivery + 1000  # no such delivery: only its ack fails
            outcomes = await asyncio.gather(*(r.ack() for r in got), app.ack(stale),
                                            return_exceptions=True)
            assert outcomes[:5] == [None] * 5
            assert isinstance(outcomes[5], ApiError) and outcomes[5].code == "not_found"
            assert all(r.acked for r in got)
            status = await app.status()
            assert status["api"]["requests_ack"] - before == 1  # six acks, one request
            assert status["stored"] == 0

    asyncio.run(main())


def test_unacked_delivery_comes_again_after_disconnect(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as app:
        app.register("ipn:2.1")
        bundle_id = app.send("ipn:2.1", b"once")
        assert app.receive(timeout=10).bundle_id == bundle_id  # type: ignore[union-attr]
    node.wait_for(lambda: node.service.disconnects == 1)
    with dtn.Client(node.path, timeout=10) as app:
        app.register("ipn:2.1")
        again = app.receive(timeout=10)
        assert again is not None and again.bundle_id == bundle_id
        again.ack()


def test_repeated_delivery_dropped_within_a_session(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as app:
        app.register("ipn:2.1")
        bundle_id = app.send("ipn:2.1", b"dup")
        first = app.receive(timeout=10)
        assert first is not None

        def redeliver() -> None:  # what a restarted node does: same bundle, new delivery id
            sink = node.service.sinks["ipn:2.1"]
            node.service.unacked.clear()
            node.service.unacked[77] = (sink, bundle_id)
            sink.deliver(Delivery("ipn:2.1", 77, bundle_id, "ipn:1.0", b"dup", 1000.0))

        node.call(redeliver)
        assert app.receive(timeout=0.2) is None  # the repeat is not handed out again
        first.ack()  # acks the current delivery id
        assert node.call(lambda: node.service.unacked) == {}


def test_unknown_op_and_ill_typed_fields(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as app:
        with pytest.raises(ApiError) as info:
            app._request("fly")
        assert info.value.code == "unknown_op"
        with pytest.raises(ApiError) as info:
            app._request("send", destination=5, data=b"")
        assert info.value.code == "bad_request" and "destination" in info.value.message
        with pytest.raises(ApiError) as info:
            app._request("send", destination="ipn:2.1", data=b"", custody="yes")
        assert info.value.code == "bad_request"
        assert app.status()["stored"] == 0  # still served
    counters = node.server.counters
    assert counters["errors_unknown_op"] == 1 and counters["errors_bad_request"] == 2


def test_oversize_message_gets_too_large_then_close(node: Node) -> None:
    s = raw(node)
    s.sendall(struct.pack(">I", (4 << 20) + 1) + b"\0" * 1000)
    replies = read_all(s)
    assert [r["error"]["code"] for r in replies] == ["too_large"]
    s.close()
    assert node.server.counters["errors_too_large"] == 1


def test_garbage_is_counted_and_others_are_served(node: Node) -> None:
    with dtn.Client(node.path, timeout=10) as good:
        bad = raw(node)
        bad.sendall(struct.pack(">I", 5) + b"\xff\xfe\xfd\xfc\xfb")
        assert read_all(bad)[0]["error"]["code"] == "bad_request"
        bad.close()
        bad = raw(node)
        bad.sendall(encode_message([1, 2, 3]))  # type: ignore[arg-type]
        assert read_all(bad)[0]["error"]["code"] == "bad_request"
        bad.close()
        assert good.hello()["node_id"] == "ipn:2.0"
    assert node.server.counters["frames_bad"] == 2


def test_disconnect_mid_message_is_counted(node: Node) -> None:
    s = raw(node)
    s.sendall(encode_message({"op": "status", "seq": 1})[:-3])
    s.close()
    node.wait_for(lambda: node.server.counters["disconnects_midmessage"] == 1)
    node.wait_for(lambda: node.server.clients == 0)


def test_slow_client_is_disconnected_and_its_deliveries_wait_again(tmp_path: Path) -> None:
    node = Node(tmp_path / "n.sock", queue_messages=8, queue_bytes=1 << 20, max_message=1 << 20)
    try:
        sleeper = raw(node)
        sleeper.sendall(encode_message({"op": "register", "seq": 1, "endpoint": "ipn:2.1"}))
        node.wait_for(lambda: "ipn:2.1" in node.service.sinks)
        with dtn.Client(node.path, timeout=10) as sender:
            for _ in range(40):  # far more than the socket buffers and the queue hold
                sender.send("ipn:2.1", b"z" * 200_000)
            node.wait_for(lambda: node.server.counters["clients_slow"] == 1)
            node.wait_for(lambda: node.service.disconnects == 1)
            assert node.call(lambda: (len(node.service.unacked), len(node.service.waiting))) == (
                0, 40)
            assert sender.hello()["node_id"] == "ipn:2.0"  # the server still serves others
        sleeper.close()
    finally:
        node.stop()


def test_stream_50_mb_in_bounded_memory(node: Node, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(50):
            piece = bytes([i]) + block[1:]
            f.write(piece)
            digest.update(piece)
    with dtn.Client(node.path, timeout=30) as app:
        tracemalloc.start()
        try:
            app.send("ipn:2.1", big)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # tracemalloc sees every thread: this peak includes the server's side too
    assert peak < 8 << 20, peak
    assert node.service.streamed == [(50 << 20, digest.hexdigest())]


def test_async_stream_and_size_mismatch(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * ((1 << 20) + 5))

    async def main() -> None:
        async with dtn.AsyncClient(node.path, timeout=10) as app:
            await app.send("ipn:2.1", path)
            stream = (await app._request("send_begin", destination="ipn:2.1", size=3))["stream"]
            await app._request("send_chunk", stream=stream, data=b"ab")
            with pytest.raises(ApiError) as info:
                await app._request("send_end", stream=stream)
            assert info.value.code == "bad_request" and "2 of 3" in info.value.message
            with pytest.raises(ApiError) as info:
                await app._request("send_chunk", stream=stream, data=b"c")
            assert info.value.code == "not_found"

    asyncio.run(main())
    assert node.service.streamed == [((1 << 20) + 5, hashlib.sha256(path.read_bytes()).hexdigest())]


def test_stale_socket_replaced_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # leaves the file, nobody listening
    node = Node(path)
    try:
        with dtn.Client(path, timeout=10) as app:
            assert app.hello()["node_id"] == "ipn:2.0"
        second = ApiServer(path, DictService())
        with pytest.raises(RuntimeError, match="another API server"):
            asyncio.run(second.start())
        with dtn.Client(path, timeout=10) as app:  # the first is untouched
            assert app.hello()["node_id"] == "ipn:2.0"
    finally:
        node.stop()


def test_connection_errors_name_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "none.sock"
    with pytest.raises(ConnectionError, match="none.sock.*not running"):
        dtn.Client(path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(ConnectionError, match="stale"):
        asyncio.run(dtn.AsyncClient.connect(path))


def test_default_path_from_environment(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTN_API_SOCKET", str(node.path))
    with dtn.Client(timeout=10) as app:
        assert app.hello()["node_id"] == "ipn:2.0"


def test_max_clients(tmp_path: Path) -> None:
    node = Node(tmp_path / "m.sock", max_clients=1)
    try:
        with dtn.Client(node.path, timeout=10) as first:
            assert first.hello()
            extra = raw(node)
            assert read_all(extra)[0]["error"]["message"].startswith("too many clients")
            extra.close()
    finally:
        node.stop()


def test_stream_backpressure_waits_for_the_service(node: Node) -> None:
    """At most one chunk waits beyond the one the service holds; the next is not read."""
    gate = node.call(asyncio.Event)
    node.service.gate = gate  # type: ignore[assignment]
    s = raw(node)
    reader = MessageReader()
    s.sendall(encode_message({"op": "send_begin", "seq": 1, "destination": "ipn:2.1",
                              "size": 3}))
    for seq in (2, 3, 4):
        s.sendall(encode_message({"op": "send_chunk", "seq": seq, "stream": 1, "data": b"x"}))

    def replies(n: int) -> list[int]:
        out: list[dict] = []
        while len(out) < n:
            out += reader.feed(s.recv(65536))
        return [r["re"] for r in out if r.get("ok")]

    assert replies(3) == [1, 2, 3]  # the 1st chunk sits with the service, the 2nd is queued
    s.settimeout(0.2)
    with pytest.raises(TimeoutError):
        s.recv(65536)  # the 3rd is not accepted while the service holds the 1st
    assert node.service.chunks_taken == 1
    s.settimeout(10)
    node.loop.call_soon_threadsafe(gate.set)
    assert replies(1) == [4]
    s.close()


def test_pipelined_sends_share_a_commit_in_order_and_bounded(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends on one connection wait for their commit together, not one after another; they
    reach the service in the order sent, and at most CONCURRENT_SENDS wait at once."""
    monkeypatch.setattr("dtn.api.server.CONCURRENT_SENDS", 3)
    commit = node.call(asyncio.Event)
    node.service.commit = commit  # type: ignore[assignment]
    s = raw(node)
    for seq in range(1, 6):
        s.sendall(encode_message({"op": "send", "seq": seq, "destination": "ipn:2.1",
                                  "data": bytes([seq])}))
    node.wait_for(lambda: node.service.count == 3)
    time.sleep(0.1)
    assert node.service.count == 3  # the 4th waits for a slot
    node.loop.call_soon_threadsafe(commit.set)
    reader, replies = MessageReader(), []
    while len(replies) < 5:
        replies += reader.feed(s.recv(65536))
    s.close()
    assert sorted((r["re"], r["bundle_id"]) for r in replies) == [
        (seq, f"ipn:1.0/{seq}") for seq in range(1, 6)]
    assert [node.service.bundles_[f"ipn:1.0/{seq}"][1] for seq in range(1, 6)] == [
        bytes([seq]) for seq in range(1, 6)]


@pytest.mark.parametrize("blocking", [True, False])
def test_a_streamed_send_waits_longer_the_larger_it_is(
    node: Node, tmp_path: Path, blocking: bool
) -> None:
    """The reply to send_end comes once the node stored the whole file: the client allows a
    second per DURABLE_BYTES_PER_SECOND bytes beyond its timeout, and no more."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(dtn.client.DURABLE_BYTES_PER_SECOND))  # one second of patience
    node.service.store_seconds = 0.6

    def send(timeout: float) -> str:
        if blocking:
            with dtn.Client(node.path, timeout=timeout) as app:
                return app.send("ipn:2.1", path)

        async def main() -> str:
            async with dtn.AsyncClient(node.path, timeout=timeout) as app:
                return await app.send("ipn:2.1", path)

        return asyncio.run(main())

    assert send(0.3).startswith("ipn:1.0/")  # 0.6 s > the timeout, < timeout + patience
    node.service.store_seconds = 2.0
    with pytest.raises(TimeoutError, match="within 1 s"):
        send(0.3)
