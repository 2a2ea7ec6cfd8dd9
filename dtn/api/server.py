"""asyncio shell of the application API: a Unix-socket server calling a `Service`.

One task per connection reads frames and answers requests in order, except plain sends: each
runs as its own task (up to CONCURRENT_SENDS a connection), because its reply waits for the
store's next commit, which all the sends of one event-loop turn share; a client that pipelines
its sends gets them committed together. A writer task per connection drains its outgoing
queue, many frames a write. Pushes (deliveries, events) go on that queue without blocking the
node; a client whose queue overflows is disconnected (its un-acked deliveries go back to
waiting in the store through `service.disconnected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections import Counter, deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from dtn.api.protocol import (
    DEFAULT_MAX_MESSAGE,
    MessageReader,
    ProtocolError,
    encode_frame,
    validate_request,
)
from dtn.api.service import ApiError, Delivery, SendRequest, Service
from dtn.streamio import drain_waits_for_all, write_while_sent

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
# Read up to this much a turn of the event loop (a connection buffers at most twice it): a
# 1 MB send read 64 KiB a turn took 16 turns, each as long as the node's other work in it.
_READ_SIZE = 1 << 20
_WRITE_BATCH = 1 << 18
_END = object()  # end of a stream's chunks
CONCURRENT_SENDS = 256  # per connection: sends waiting for their commit at once


class _Closed(Exception):
    """The connection is going away; stop serving it."""


class _Connection:
    """One client: its outgoing queue (bounded in messages and bytes) and its streams.

    It is also the connection's Sink (Service.register/watch/ack receive it).
    """

    def __init__(self, server: ApiServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        drain_waits_for_all(writer)
        self.out: deque[bytes] = deque()
        self.out_bytes = 0
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.closing = False  # no more messages are queued
        self.aborted = False  # queued messages are dropped too
        self.streams: dict[int, _Stream] = {}
        self.next_stream = 1
        self.sends: set[asyncio.Task[None]] = set()
        self.send_finished = asyncio.Event()

    # Sink
    def deliver(self, delivery: Delivery) -> None:
        self.push(
            {
                "push": "bundle",
                "endpoint": delivery.endpoint,
                "delivery": delivery.delivery,
                "bundle_id": delivery.bundle_id,
                "source": delivery.source,
                "data": delivery.data,
                "created": delivery.created,
                **({} if delivery.path is None else {"path": delivery.path}),
            }
        )

    def event(self, bundle_id: str, name: str, at: float, detail: str) -> None:
        self.push(
            {"push": "event", "bundle_id": bundle_id, "event": name, "at": at, "detail": detail}
        )

    def push(self, message: dict) -> None:
        if self.closing:
            return
        if len(self.out) >= self.server.queue_messages or self.out_bytes >= self.server.queue_bytes:
            self.server.counters["clients_slow"] += 1
            log.warning("api client not reading: disconnected")
            self.abort()
            return
        self._enqueue(message)

    def reply(self, message: dict) -> None:
        """Replies are never dropped; the reader waits for room before the next request."""
        if not self.closing:
            self._enqueue(message)

    def _enqueue(self, message: dict) -> None:
        header, body = encode_frame(message)
        if len(body) < _WRITE_BATCH:
            self.out.append(header + body)
        else:  # the body goes out as it is: copying a megabyte costs it again in page faults
            self.out.append(header)
            self.out.append(body)
        self.out_bytes += len(header) + len(body)
        self.drained.clear()
        self.wakeup.set()

    def abort(self) -> None:
        self.closing = True
        self.aborted = True
        self.out.clear()
        self.out_bytes = 0
        self.wakeup.set()
        self.writer.transport.abort()

    def _take_batch(self) -> bytes:
        """Queued frames up to _WRITE_BATCH bytes (at least one), as one write: a syscall for
        each 1 KiB delivery would cost more than the delivery. A large piece goes alone."""
        frames, size = [], 0
        while self.out and size < _WRITE_BATCH and not (
            frames and len(self.out[0]) >= _WRITE_BATCH
        ):
            frame = self.out.popleft()
            frames.append(frame)
            size += len(frame)
        self.out_bytes -= size
        return frames[0] if len(frames) == 1 else b"".join(frames)

    async def write_loop(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.out and not self.aborted:
                    unsent = deque([memoryview(self._take_batch())])
                    while unsent:
                        write_while_sent(self.writer, unsent)
                        await self.writer.drain()
                self.drained.set()
                if self.closing:
                    return
        except (ConnectionError, OSError):
            self.closing = True
            self.drained.set()

    async def start_send(self, handling: Coroutine[Any, Any, None]) -> None:
        """Run a send's handling beside the requests after it, once fewer than
        CONCURRENT_SENDS are running. Tasks start in the order made: so do the submissions."""
        while len(self.sends) >= CONCURRENT_SENDS:
            self.send_finished.clear()
            await self.send_finished.wait()
        task = asyncio.ensure_future(handling)
        self.sends.add(task)
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self.sends.discard(task)
        self.send_finished.set()

    async def room(self) -> None:
        """Wait until the outgoing queue is below half its bounds (backpressure on requests)."""
        while not self.closing and (
            len(self.out) >= self.server.queue_messages // 2
            or self.out_bytes >= self.server.queue_bytes // 2
        ):
            self.drained.clear()
            await self.drained.wait()


class _Stream:
    """A streamed send: chunks handed one at a time to `service.send_stream`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.received = 0
        self.chunks: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self.task: asyncio.Task[str] | None = None

    async def iterate(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.chunks.get()
            if item is _END:
                if self.received != self.size:
                    raise ApiError(
                        "bad_request", f"stream ended after {self.received} of {self.size} bytes"
                    )
                return
            yield item

    async def put(self, item: Any) -> None:
        """Hand one chunk over; returns once the queue took it (the service consumed the last)."""
        assert self.task is not None
        put = asyncio.ensure_future(self.chunks.put(item))
        await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            # the service finished (or failed) without taking the chunk
            self.task.result()
            raise ApiError("bad_request", "stream already finished")


class ApiServer:
    """Unix-socket server of the application API (see docs/api.md)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        service: Service,
        *,
        mode: int = 0o600,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_clients: int = 64,
        queue_messages: int = 1024,
        queue_bytes: int = 64 << 20,
    ) -> None:
        self.path = os.fspath(path)
        self.service = service
        self.mode = mode
        self.max_message = max_message
        self.max_clients = max_clients
        self.queue_messages = queue_messages
        self.queue_bytes = max(queue_bytes, 2 * max_message)
        self.counters: Counter[str] = Counter()
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    @property
    def clients(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._remove_stale()
        old = os.umask(0o777 & ~self.mode)  # the socket file never exists with a wider mode
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=self.path, limit=_READ_SIZE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)

    def _remove_stale(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)  # stale: left by a node that died
            return
        except OSError as exc:
            raise RuntimeError(f"cannot probe {self.path}: {exc}") from exc
        else:
            raise RuntimeError(f"another API server is running on {self.path}")
        finally:
            probe.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        conn = _Connection(self, writer)
        self.counters["connections"] += 1
        writer_task = asyncio.ensure_future(conn.write_loop())
        try:
            if len(self._connections) >= self.max_clients:
                self.counters["errors_internal"] += 1
                self.counters["clients_refused"] += 1
                conn.reply(_error(None, "internal", f"too many clients ({self.max_clients})"))
                return
            self._connections.add(conn)
            await self._read_loop(conn, reader)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must not take the server down; the client just loses its link
            log.exception("api connection failed")
            self.counters["errors_internal"] += 1
        finally:
            if conn.sends:  # submitted: their commit is at most a turn away
                await asyncio.wait(set(conn.sends), timeout=1.0)
            for send in conn.sends:
                send.cancel()
            self._connections.discard(conn)
            for stream in conn.streams.values():
                if stream.task is not None:
                    stream.task.cancel()
            conn.streams.clear()
            try:
                self.service.disconnected(conn)
            except Exception:
                log.exception("service.disconnected failed")
            conn.closing = True
            conn.wakeup.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 1.0)  # flush a final error reply
            writer_task.cancel()
            if conn.out or conn.aborted:
                writer.transport.abort()
            else:
                writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        frames = MessageReader(self.max_message)
        while not conn.closing:
            try:
                data = await reader.read(_READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if frames.pending:
                    self.counters["disconnects_midmessage"] += 1
                return
            try:
                messages = frames.feed(data)
            except ProtocolError as exc:
                code = "too_large" if exc.reason == "too_large" else "bad_request"
                if code == "bad_request":
                    self.counters["frames_bad"] += 1
                self.counters[f"errors_{code}"] += 1
                conn.reply(_error(None, code, exc.message))
                return  # framing is lost or the peer is hostile: close after the reply
            for message in messages:
                await conn.room()
                if message.get("op") == "send":
                    await conn.start_send(self._handle(conn, message))
                else:
                    await self._handle(conn, message)

    async def _handle(self, conn: _Connection, message: dict) -> None:
        seq = message.get("seq") if type(message.get("seq")) is int else None
        try:
            op, seq = validate_request(message)
        except ProtocolError as exc:
            self.counters[f"errors_{exc.reason}"] += 1
            conn.reply(_error(seq, exc.reason, exc.message))
            return
        self.counters[f"requests_{op}"] += 1
        try:
            result = await self._dispatch(conn, op, message)
        except ApiError as exc:
            self.counters[f"errors_{exc.code}"] += 1
            conn.reply(_error(seq, exc.code, exc.message))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("api op %s failed", op)
            self.counters["errors_internal"] += 1
            conn.reply(_error(seq, "internal", f"{type(exc).__name__}: {exc}"[:500]))
            return
        conn.reply({"re": seq, "ok": True, **result})

    async def _dispatch(self, conn: _Connection, op: str, m: dict) -> dict:
        service = self.service
        if op == "hello":
            info = dict(service.hello())
            info.setdefault("version", PROTOCOL_VERSION)
            info["max_message"] = self.max_message
            return info
        if op == "send":
            return {"bundle_id": await service.send(_send_request(m, conn))}
        if op == "send_begin":
            return {"stream": self._begin(conn, m)}
        if op == "send_chunk":
            stream = self._stream(conn, m["stream"])
            stream.received += len(m["data"])
            if stream.received > stream.size:
                self._drop_stream(conn, m["stream"])
                raise ApiError("bad_request", f"stream longer than its size {stream.size}")
            try:
                await stream.put(m["data"])
            except BaseException:
                self._drop_stream(conn, m["stream"])
                raise
            return {}
        if op == "send_end":
            stream = self._stream(conn, m["stream"])
            try:
                await stream.put(_END)
                assert stream.task is not None
                return {"bundle_id": await stream.task}
            finally:
                self._drop_stream(conn, m["stream"])
        if op == "register":
            service.register(m["endpoint"], conn)
            return {}
        if op == "unregister":
            service.unregister(m["endpoint"], conn)
            return {}
        if op == "ack":
            return _ack(service, conn, m)
        if op == "status":
            status = dict(service.status())
            status["api"] = {"clients": self.clients, **self.counters}
            return status
        if op == "bundles":
            limit = min(m.get("limit", 100), 10_000)
            return {"bundles": service.bundles(limit)}
        if op == "watch":
            service.watch(m["bundle_id"], conn)
            return {}
        raise ApiError("unknown_op", op)  # the schema and this table disagree

    def _begin(self, conn: _Connection, m: dict) -> int:
        if len(conn.streams) >= 4:
            raise ApiError("bad_request", "too many open streams on this connection")
        stream = _Stream(m["size"])
        number = conn.next_stream
        conn.next_stream += 1
        stream.task = asyncio.ensure_future(
            self.service.send_stream(_send_request(m, conn), stream.iterate())
        )
        # a failed stream nobody ends must not log "exception never retrieved"
        stream.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        conn.streams[number] = stream
        return number

    def _stream(self, conn: _Connection, number: int) -> _Stream:
        stream = conn.streams.get(number)
        if stream is None:
            raise ApiError("not_found", f"no open stream {number}")
        return stream

    def _drop_stream(self, conn: _Connection, number: int) -> None:
        stream = conn.streams.pop(number, None)
        if stream is not None and stream.task is not None and not stream.task.done():
            stream.task.cancel()


def _send_request(m: dict, conn: _Connection) -> SendRequest:
    lifetime = m.get("lifetime")
    return SendRequest(
        destination=m["destination"],
        data=m.get("data", b""),
        lifetime=float(lifetime) if lifetime is not None else None,
        custody=m.get("custody", True),
        priority=m.get("priority", 1),
        report=m.get("report", False),
        source=m.get("source"),
        size=m.get("size"),
        name=m.get("name"),
        watcher=conn if m.get("watch", False) else None,
    )


def _error(seq: int | None, code: str, message: str) -> dict:
    return {"re": seq, "ok": False, "error": {"code": code, "message": message}}


def _ack(service: Service, conn: _Connection, m: dict) -> dict:
    """One delivery (an unknown one is a not_found error) or a list of them (the unknown ones
    come back in `not_found`, the rest are acked)."""
    if "delivery" in m:
        service.ack(conn, m["delivery"])
        return {}
    missing = []
    for delivery in m["deliveries"]:
        try:
            service.ack(conn, delivery)
        except ApiError as exc:
            if exc.code != "not_found":
                raise
            missing.append(delivery)
    return {"not_found": missing} if missing else {}
