"""Clients of the node's application API: `Client` (blocking) and `AsyncClient` (asyncio).

Both speak the framing of dtn/api/protocol.py over the node's Unix socket. Pushes that arrive
while a request waits for its reply are queued, never lost. Deliveries repeated by the node
(after a node restart, un-acked deliveries come again) are dropped by bundle id within the
client's session; see docs/api.md for what is and is not guaranteed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dtn.api.protocol import DEFAULT_MAX_MESSAGE, MessageReader, encode_message
from dtn.api.service import ApiError

__all__ = ["ApiError", "AsyncClient", "Client", "Event", "Received"]

CHUNK = 1 << 20  # streamed sends: one send_chunk per MiB, so memory stays constant
_RECV = 1 << 18  # what asyncio's transport reads at once
# A streamed send's reply comes once the node has stored every fragment of it; the timeout
# grows by a second for each this many bytes, a slow disk's pace (4 MB/s).
DURABLE_BYTES_PER_SECOND = 4_000_000


@dataclass(eq=False)
class Received:
    """One bundle delivered to a registered endpoint; ack it once it is safe with you."""

    endpoint: str
    bundle_id: str
    source: str
    data: bytes
    delivery: int
    created: float = 0.0
    # Large data (above the node's large_adu) comes as a file on the node's machine instead of
    # `data`: take it with save() or read it before acking; the node removes it at the ack.
    path: str | None = None
    acked: bool = False
    _client: Any = field(default=None, repr=False)

    def ack(self) -> Any:
        """Acknowledge (blocking client: returns None; AsyncClient: returns an awaitable)."""
        return self._client.ack(self)

    @property
    def size(self) -> int:
        return len(self.data) if self.path is None else os.path.getsize(self.path)

    def save(self, target: str | os.PathLike[str]) -> None:
        """Put the payload at `target`, whole or not at all: a large one is moved there (copied
        when `target` is on another file system), a small one written."""
        partial = f"{os.fspath(target)}.part"
        if self.path is None:
            with open(partial, "wb") as f:
                f.write(self.data)
        else:
            try:
                os.replace(self.path, target)
                return
            except OSError:  # another file system, or the node's directory is not writable
                shutil.copyfile(self.path, partial)
        os.replace(partial, target)

    def write_to(self, stream: BinaryIO) -> None:
        """Write the payload to a binary stream, a large one piece by piece."""
        if self.path is None:
            stream.write(self.data)
            return
        with open(self.path, "rb") as f:
            shutil.copyfileobj(f, stream, CHUNK)


@dataclass(frozen=True, slots=True)
class Event:
    """A status event of a watched bundle (custody_accepted, delivered, forwarded, ...)."""

    bundle_id: str
    event: str
    at: float  # mission Unix seconds
    detail: str


def socket_path(path: str | os.PathLike[str] | None) -> str:
    """The given path, else $DTN_API_SOCKET."""
    if path is not None:
        return os.fspath(path)
    env = os.environ.get("DTN_API_SOCKET")
    if not env:
        raise ValueError("no API socket path given and $DTN_API_SOCKET is not set")
    return env


def _connection_error(path: str, exc: OSError) -> ConnectionError:
    if isinstance(exc, FileNotFoundError):
        why = "no socket file there: the node is not running (or uses another socket path)"
    elif isinstance(exc, ConnectionRefusedError):
        why = "the socket file exists but nobody answers: the node is not running (stale socket)"
    elif isinstance(exc, PermissionError):
        why = "permission denied: the node runs as another user (socket mode 0600)"
    else:
        why = str(exc)
    return ConnectionError(f"cannot connect to the dtn node API at {path}: {why}")


def _raise_for(reply: dict) -> dict:
    if reply.get("ok") is True:
        return reply
    error = reply.get("error")
    if isinstance(error, dict):
        raise ApiError(str(error.get("code", "internal")), str(error.get("message", "")))
    raise ApiError("internal", f"malformed reply {reply!r}"[:200])


def _send_fields(
    lifetime: float | None, custody: bool, priority: int, report: bool, source: str | None,
    watch: bool,
) -> dict:
    fields: dict[str, Any] = {"custody": custody, "priority": priority, "report": report}
    if watch:
        fields["watch"] = True
    if lifetime is not None:
        fields["lifetime"] = float(lifetime)
    if source is not None:
        fields["source"] = source
    return fields


def _send_steps(
    destination: str, data: bytes | os.PathLike[str], options: dict
) -> Generator[tuple[str, dict], dict | None, str]:
    """The requests of one send, for either client: yields (op, fields), is sent each reply.

    A path is streamed in CHUNK pieces with send_begin/chunk/end, never read whole.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        reply = yield "send", {"destination": destination, "data": bytes(data), **options}
        assert reply is not None
        return reply["bundle_id"]
    path = os.fspath(data)
    with open(path, "rb") as f:  # local reads of 1 MiB: not worth a thread hop in AsyncClient
        begin = {"destination": destination, "size": os.fstat(f.fileno()).st_size,
                 "name": os.path.basename(path)[:4096], **options}
        reply = yield "send_begin", begin
        assert reply is not None
        stream = reply["stream"]
        while chunk := f.read(CHUNK):
            yield "send_chunk", {"stream": stream, "data": chunk}
        # the node seals and stores the whole file before it answers: allow for it
        patience = begin["size"] / DURABLE_BYTES_PER_SECOND
        reply = yield "send_end", {"stream": stream, "patience": patience}
        assert reply is not None
        return reply["bundle_id"]


def _received(push: dict, client: Any) -> Received:
    return Received(
        endpoint=push.get("endpoint", ""),
        bundle_id=push.get("bundle_id", ""),
        source=push.get("source", ""),
        data=push.get("data", b""),
        delivery=push.get("delivery", -1),
        created=push.get("created", 0.0),
        path=push.get("path"),
        _client=client,
    )


def _event(push: dict) -> Event:
    return Event(push.get("bundle_id", ""), push.get("event", ""), push.get("at", 0.0),
                 push.get("detail", ""))


def _mark_acked(done: asyncio.Future[None], received: Received) -> None:
    if not done.cancelled() and done.exception() is None:
        received.acked = True


def _settle_acks(reply: asyncio.Future[dict], batch: list[tuple[int, asyncio.Future[None]]],
                 timer: asyncio.TimerHandle | None) -> None:
    """Each ack of one request gets its outcome: the node names the deliveries it did not know."""
    if timer is not None:
        timer.cancel()
    try:
        missing = set(_raise_for(reply.result()).get("not_found", ()))
    except BaseException as exc:
        outcomes = [exc] * len(batch)
    else:
        outcomes = [ApiError("not_found", f"no delivery {delivery} outstanding on this "
                             "connection") if delivery in missing else None
                    for delivery, _ in batch]
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


class _Session:
    """What both clients share: seq numbers, push queues, repeat suppression."""

    def __init__(self) -> None:
        self.seq = 0
        self.deliveries: deque[Received] = deque()
        self.events: deque[Event] = deque()
        self.seen: dict[str, Received] = {}  # bundle id -> what this session handed out
        self.auto_acks: list[int] = []  # repeats of bundles the application already acked

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def on_push(self, push: dict, client: Any) -> None:
        kind = push.get("push")
        if kind == "event":
            self.events.append(_event(push))
        elif kind == "bundle":
            received = _received(push, client)
            earlier = self.seen.get(received.bundle_id)
            if earlier is None:
                self.seen[received.bundle_id] = received
                self.deliveries.append(received)
            elif earlier.acked:
                self.auto_acks.append(received.delivery)  # the node lost our ack; repeat it
            else:
                earlier.delivery = received.delivery  # still with the app: its ack acks this one


class Client:
    """Blocking client over a plain Unix socket. Use as a context manager."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.path = socket_path(path)
        self.timeout = timeout
        self._session = _Session()
        self._reader = MessageReader(max_message)
        self._pending: deque[dict] = deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise _connection_error(self.path, exc) from None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # wire
    def _write(self, message: dict) -> None:
        self._sock.sendall(encode_message(message))

    def _read_message(self, deadline: float | None) -> dict | None:
        """Next message from the socket; None on timeout. Raises ConnectionError at EOF."""
        while not self._pending:
            if deadline is None:
                self._sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._sock.settimeout(left)
            try:
                data = self._sock.recv(_RECV)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError(f"the dtn node closed the API connection ({self.path})")
            self._pending.extend(self._reader.feed(data))
        return self._pending.popleft()

    def _flush_auto_acks(self) -> None:
        while self._session.auto_acks:
            # fire and forget: their replies carry seqs nobody waits for and are skipped
            self._write({"op": "ack", "seq": self._session.next_seq(),
                         "delivery": self._session.auto_acks.pop()})

    def _request(self, op: str, *, patience: float = 0.0, **fields: Any) -> dict:
        """One request's reply; `patience` is seconds allowed beyond the timeout."""
        seq = self._session.next_seq()
        self._write({"op": op, "seq": seq, **fields})
        wait = None if self.timeout is None else self.timeout + patience
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            message = self._read_message(deadline)
            if message is None:
                raise TimeoutError(f"no reply to {op} from the dtn node within {wait:.0f} s")
            if "push" in message:
                self._session.on_push(message, self)
            elif message.get("re") == seq or message.get("re") is None:
                self._flush_auto_acks()
                return _raise_for(message)

    # ops
    def hello(self) -> dict:
        return self._request("hello", version=1)

    def send(
        self,
        destination: str,
        data: bytes | os.PathLike[str],
        *,
        lifetime: float | None = None,
        custody: bool = True,
        priority: int = 1,
        report: bool = False,
        source: str | None = None,
        watch: bool = False,
    ) -> str:
        """Send bytes, or stream a file given by path; returns the bundle id once durable."""
        steps = _send_steps(destination, data, _send_fields(lifetime, custody, priority, report,
                                                            source, watch))
        reply: dict = {}
        try:
            while True:
                op, fields = steps.send(reply or None)
                reply = self._request(op, **fields)
        except StopIteration as done:
            return done.value

    def register(self, endpoint: str) -> None:
        self._request("register", endpoint=endpoint)

    def unregister(self, endpoint: str) -> None:
        self._request("unregister", endpoint=endpoint)

    def ack(self, received: Received | int) -> None:
        if isinstance(received, Received):
            self._request("ack", delivery=received.delivery)
            received.acked = True
        else:
            self._request("ack", delivery=received)

    def status(self) -> dict:
        reply = self._request("status")
        return {k: v for k, v in reply.items() if k not in ("re", "ok")}

    def bundles(self, limit: int = 100) -> list[dict]:
        return self._request("bundles", limit=limit)["bundles"]

    def watch(self, bundle_id: str) -> None:
        self._request("watch", bundle_id=bundle_id)

    def _wait_push(self, queue: deque[Any], timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not queue:
            message = self._read_message(deadline)
            if message is None:
                return None
            if "push" in message:
                self._session.on_push(message, self)
            self._flush_auto_acks()  # replies to fire-and-forget acks land here and are skipped
        return queue.popleft()

    def receive(self, timeout: float | None = None) -> Received | None:
        """The next delivery; None if none came within `timeout` seconds (None: wait)."""
        return self._wait_push(self._session.deliveries, timeout)

    def deliveries(self, timeout: float | None = None) -> Iterator[Received]:
        """Deliveries as they come; ends when none came within `timeout` (None: never)."""
        while (received := self.receive(timeout)) is not None:
            yield received

    def events(self, timeout: float | None = None) -> Event | None:
        """The next event push of a watched bundle; None on timeout."""
        return self._wait_push(self._session.events, timeout)


class AsyncClient:
    """asyncio client: `async with AsyncClient(path) as c` or `c = await AsyncClient.connect(path)`.

    A reader task dispatches replies to waiting requests and queues pushes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.path = socket_path(path)
        self.timeout = timeout
        self.max_message = max_message
        self._session = _Session()
        self._waiting: dict[int, asyncio.Future[dict]] = {}
        self._pushed = asyncio.Event()
        self._closed: BaseException | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._acks: list[tuple[int, asyncio.Future[None]]] = []  # for the next ack request

    @classmethod
    async def connect(
        cls, path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> AsyncClient:
        client = cls(path, **kwargs)
        await client.open()
        return client

    async def open(self) -> None:
        try:
            reader, self._writer = await asyncio.open_unix_connection(self.path, limit=_RECV)
        except OSError as exc:
            raise _connection_error(self.path, exc) from None
        self._task = asyncio.ensure_future(self._read_loop(reader))

    async def __aenter__(self) -> AsyncClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if self._closed is None:  # wake other tasks waiting here: they would wait forever
                self._fail(ConnectionError(f"API connection to {self.path} closed"))
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        frames = MessageReader(self.max_message)
        error: BaseException = ConnectionError(
            f"the dtn node closed the API connection ({self.path})"
        )
        try:
            while data := await reader.read(_RECV):
                for message in frames.feed(data):
                    if "push" in message:
                        self._session.on_push(message, self)
                        self._pushed.set()
                        for delivery in self._session.auto_acks:
                            self._fire("ack", delivery=delivery)
                        self._session.auto_acks.clear()
                        continue
                    future = self._waiting.pop(message.get("re"), None)  # type: ignore[arg-type]
                    if future is None and message.get("re") is None and self._waiting:
                        # an error without seq (too_large...): it answers the oldest request
                        future = self._waiting.pop(min(self._waiting))
                    if future is not None and not future.done():
                        future.set_result(message)
        except (ConnectionError, OSError) as exc:
            error = ConnectionError(f"API connection to {self.path} lost: {exc}")
        except Exception as exc:  # ProtocolError from a broken server: fail the waiters
            error = exc
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """The connection is over: every request waiting and every later one gets `error`."""
        self._closed = error
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        self._pushed.set()

    def _fire(self, op: str, **fields: Any) -> int:
        if self._closed is not None:
            raise self._closed
        assert self._writer is not None, "AsyncClient not open"
        seq = self._session.next_seq()
        self._writer.write(encode_message({"op": op, "seq": seq, **fields}))
        return seq

    async def _request(self, op: str, *, patience: float = 0.0, **fields: Any) -> dict:
        """One request's reply; `patience` is seconds allowed beyond the timeout."""
        seq = self._fire(op, **fields)
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        assert self._writer is not None
        await self._writer.drain()  # backpressure: a streamed send waits for the socket
        wait = None if self.timeout is None else self.timeout + patience
        try:
            async with asyncio.timeout(wait):  # no task per request, unlike wait_for
                reply = await future
        except TimeoutError:
            self._waiting.pop(seq, None)
            raise TimeoutError(f"no reply to {op} from the dtn node within {wait:.0f} s") from None
        return _raise_for(reply)

    async def hello(self) -> dict:
        return await self._request("hello", version=1)

    async def send(
        self,
        destination: str,
        data: bytes | os.PathLike[str],
        *,
        lifetime: float | None = None,
        custody: bool = True,
        priority: int = 1,
        report: bool = False,
        source: str | None = None,
        watch: bool = False,
    ) -> str:
        """Send bytes, or stream a file given by path; returns the bundle id once durable."""
        steps = _send_steps(destination, data, _send_fields(lifetime, custody, priority, report,
                                                            source, watch))
        reply: dict = {}
        try:
            while True:
                op, fields = steps.send(reply or None)
                reply = await self._request(op, **fields)
        except StopIteration as done:
            return done.value

    async def register(self, endpoint: str) -> None:
        await self._request("register", endpoint=endpoint)

    async def unregister(self, endpoint: str) -> None:
        await self._request("unregister", endpoint=endpoint)

    def ack(self, received: Received | int) -> asyncio.Future[None]:
        """Acknowledge a delivery; await the result to know the node took it. The acks made
        in one event-loop turn go out as one request, so acking each bundle as it comes costs
        the node and this process one message per turn, not one per bundle."""
        if self._closed is not None:
            raise self._closed
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery = received
        if isinstance(received, Received):
            future.add_done_callback(lambda done: _mark_acked(done, received))
            delivery = received.delivery
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._acks.append((delivery, future))
        return future

    def _send_acks(self) -> None:
        batch, self._acks = self._acks, []
        try:
            if len(batch) == 1:
                seq = self._fire("ack", delivery=batch[0][0])
            else:
                seq = self._fire("ack", deliveries=[delivery for delivery, _ in batch])
        except BaseException as exc:  # the connection is gone
            for _, future in batch:
                future.set_exception(exc)
            return
        reply: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = reply
        timer = None if self.timeout is None else asyncio.get_running_loop().call_later(
            self.timeout, self._ack_timeout, seq)
        reply.add_done_callback(lambda done: _settle_acks(done, batch, timer))

    def _ack_timeout(self, seq: int) -> None:
        reply = self._waiting.pop(seq, None)
        if reply is not None and not reply.done():
            reply.set_exception(
                TimeoutError(f"no reply to ack from the dtn node within {self.timeout:.0f} s"))

    async def status(self) -> dict:
        reply = await self._request("status")
        return {k: v for k, v in reply.items() if k not in ("re", "ok")}

    async def bundles(self, limit: int = 100) -> list[dict]:
        return (await self._request("bundles", limit=limit))["bundles"]

    async def watch(self, bundle_id: str) -> None:
        await self._request("watch", bundle_id=bundle_id)

    async def _wait_push(self, queue: deque[Any], timeout: float | None) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not queue:  # a queued push is returned without waiting
                    if self._closed is not None:
                        raise self._closed
                    self._pushed.clear()
                    await self._pushed.wait()
        except TimeoutError:
            return None
        return queue.popleft()

    async def receive(self, timeout: float | None = None) -> Received | None:
        """The next delivery; None if none came within `timeout` seconds (None: wait)."""
        return await self._wait_push(self._session.deliveries, timeout)

    async def deliveries(self, timeout: float | None = None) -> AsyncIterator[Received]:
        """Deliveries as they come; ends when none came within `timeout` (None: never)."""
        while (received := await self.receive(timeout)) is not None:
            yield received

    async def events(self, timeout: float | None = None) -> Event | None:
        """The next event push of a watched bundle; None on timeout."""
        return await self._wait_push(self._session.events, timeout)
