"""The asyncio shell of the stream convergence layers (tcpcl3, tcpcl4, mtcp, stcp): TCP
connections that drive the sans-I/O sessions of dtn.cla.session.

Each stream neighbour is a `StreamLink`. It sends over the connection it opens to the
neighbour's `address` (reconnecting with back-off, or after the delay a TCPCLv3 SHUTDOWN asked
for), or, with `connect = false`, over the newest session the neighbour opened to us. Bundles
arriving on any of its sessions are the neighbour's. A `StreamListener` accepts connections on
one address and gives each accepted session to the neighbour it belongs to: the only one that
listens there, else the one whose node ID the session's peer named. Sessions no neighbour
claims are closed and counted.

What the daemon sees: `ready` (a session is up to send on), `queued_bytes` (not yet
acknowledged), and three callbacks: bundles received, bundles handed over (store ids), bundles
not handed over (the session ended first, or the peer refused them). Session timers run on the
event loop's monotonic clock: keepalives are about the TCP connection, not mission time.

A peer forgets a bundle once we acknowledge it, so nothing a session writes after receiving a
bundle goes out before the store has committed that bundle: the `bundles` callback returns a
future for that commit, and the connection holds its output (and stops reading) until it is
done. A failed commit ends the session unacknowledged; the peer sends the bundles again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from dtn.streamio import drain_waits_for_all, write_while_sent

from .session import (
    BundleAcked,
    BundleReceived,
    BundleRefused,
    SessionClosed,
    SessionUp,
    StreamSession,
)

log = logging.getLogger("dtn.cla.stream")

Address = tuple[str, int]
_READ_SIZE = 1 << 18
_BACKOFF_FIRST = 0.5  # s before the first reconnection attempt
_BACKOFF_MAX = 30.0
_CLOSE_GRACE = 2.0  # s an orderly shutdown may take before the socket is closed anyway
# Accepted sessions a listener holds at once. One more evicts the oldest that has carried no
# bundle (a flood of idle connections cannot lock a neighbour out); with none, it is refused.
MAX_INBOUND = 64


@dataclass(frozen=True)
class StreamCallbacks:
    # neighbour, bundles received -> a future done once they are durable
    bundles: Callable[[str, list[bytes]], asyncio.Future]
    handed_over: Callable[[str, list[int]], None]  # neighbour, store ids the peer has
    not_handed_over: Callable[[str, list[int]], None]  # neighbour, store ids to send again
    changed: Callable[[str], None]  # neighbour: ready or queued bytes changed


class _Connection:
    """One TCP connection and its session: reads into it, writes what it makes, runs its timer,
    and passes its events to `on_events`, all of one flush at once."""

    def __init__(
        self,
        session: StreamSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_events: Callable[[_Connection, list], asyncio.Future | None],
    ) -> None:
        self.session = session
        self.reader = reader
        self.writer = writer
        self.on_events = on_events
        self._flush_soon: asyncio.Handle | None = None
        self.on_drained: Callable[[], None] | None = None  # the write buffer emptied
        self._draining: asyncio.Task | None = None
        self.peer_eid: str | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self.bundles_received = 0  # a session that carried none may be evicted in a flood
        self._held: list[bytes | memoryview] = []  # output waiting for `_gate`
        self._gate: asyncio.Future | None = None  # the commit of bundles received
        self._unsent: deque[memoryview] = deque()  # output not yet given to the transport
        self._unsent_bytes = 0
        drain_waits_for_all(writer)

    @property
    def remote(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    async def run(self) -> None:
        self.flush()
        try:
            while not self.session.closed:
                if self._gate is not None:
                    await asyncio.wait([self._gate])
                    continue
                data = await self.reader.read(_READ_SIZE)
                self.session.receive_data(data, self._loop.time())
                self.flush()
                if not data:
                    break
        except (ConnectionError, OSError) as exc:
            if not self.session.closed:
                self.session.receive_data(b"", self._loop.time())
                log.info("connection %s: %s", self.remote, exc)
            self.flush()
        finally:
            await self._finish()

    def send(self, bundle: bytes) -> int:
        transfer = self.session.send_bundle(bundle, self._loop.time())
        self.flush()
        return transfer

    def close(self, reason: str) -> None:
        if not self.session.closed:
            self.session.close(reason, self._loop.time())
        self.flush()
        # A peer that never answers a shutdown does not keep the socket open.
        self._loop.call_later(_CLOSE_GRACE, self.writer.close)

    def flush_soon(self) -> None:
        """flush() at the end of this event-loop turn: the bundles the agent hands over in one
        turn go out in one write."""
        if self._flush_soon is None:
            self._flush_soon = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_soon = None
        self._held += self.session.pieces_to_send()
        events = self.session.events()
        for event in events:
            if isinstance(event, SessionUp):
                self.peer_eid = event.peer_eid
            elif isinstance(event, BundleReceived):
                self.bundles_received += 1
        commit = self.on_events(self, events) if events else None
        if commit is not None:
            gate = commit if self._gate is None else asyncio.gather(self._gate, commit)
            self._gate = gate
            gate.add_done_callback(self._committed)
        if self._gate is None:
            self._write_held()
        self._arm()

    def _committed(self, gate: asyncio.Future) -> None:
        if gate is not self._gate:
            return  # a later gate includes this one
        self._gate = None
        if gate.cancelled() or gate.exception() is not None:
            self._held.clear()  # acknowledge nothing that is not stored
            if not self.session.closed:
                self.session.close("store commit failed", self._loop.time())
            self.flush()
            return
        self._write_held()

    def _write_held(self) -> None:
        if self._held and not self.writer.is_closing():
            for piece in self._held:
                self._unsent.append(memoryview(piece))
                self._unsent_bytes += len(piece)
            self._unsent_bytes -= write_while_sent(self.writer, self._unsent)
            if self._draining is None and (self._unsent or self.on_drained is not None):
                self._draining = self._loop.create_task(self._drain())
        self._held.clear()
        if self.session.closed and not self.writer.is_closing():
            self._unsent_bytes -= write_while_sent(self.writer, self._unsent, everything=True)
            self.writer.close()

    async def _drain(self) -> None:
        """Write what is unsent as the kernel takes it; then tell `on_drained` (at once when
        it took it all): a layer without acknowledgements (MTCP, STCP) has no other event that
        says there is room again for an agent that holds back."""
        try:
            while True:
                await self.writer.drain()
                if not self._unsent or self.writer.is_closing():
                    break
                self._unsent_bytes -= write_while_sent(self.writer, self._unsent)
        except (ConnectionError, OSError):
            return
        finally:
            self._draining = None
        if self.on_drained is not None:
            self.on_drained()

    @property
    def write_buffered(self) -> int:
        if self.writer.is_closing():
            return 0
        return self._unsent_bytes + self.writer.transport.get_write_buffer_size()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.next_deadline()
        if deadline is not None and not self.session.closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self.flush()

    async def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.session.closed:
            self.session.receive_data(b"", self._loop.time())
            self.flush()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class StreamLink:
    """One neighbour over a stream layer: its sessions, and the bundles in flight on them."""

    def __init__(
        self,
        name: str,
        make_session: Callable[[bool], StreamSession],
        callbacks: StreamCallbacks,
        *,
        address: Address | None,
        connect: bool = True,
        node_id: str | None = None,
    ) -> None:
        self.name = name
        self.make_session = make_session
        self.callbacks = callbacks
        self.address = address
        self.connect = connect and address is not None
        self.node_id = node_id
        self.counters: Counter[str] = Counter()
        self._outbound: _Connection | None = None
        self._inbound: list[_Connection] = []
        self._up: set[_Connection] = set()
        self._in_flight: dict[tuple[_Connection, int], int] = {}  # (conn, transfer) -> store id
        self._queued: dict[_Connection, int] = {}  # bytes handed to a session, not acked
        self._sizes: dict[tuple[_Connection, int], int] = {}
        self._task: asyncio.Task | None = None
        self._closing = False
        self._retry_after: float | None = None

    # --- what the daemon uses -------------------------------------------------------------------

    def start(self) -> None:
        if self.connect:
            self._task = asyncio.get_running_loop().create_task(self._keep_connected())

    @property
    def ready(self) -> bool:
        return self._sender() is not None

    @property
    def queued_bytes(self) -> int:
        return sum(self._queued.values()) + sum(c.write_buffered for c in self._up)

    def send(self, bundle: bytes, store_id: int) -> None:
        connection = self._sender()
        if connection is None:
            self.counters["not_ready"] += 1
            self.callbacks.not_handed_over(self.name, [store_id])
            return
        transfer = connection.session.send_bundle(bundle, asyncio.get_running_loop().time())
        self._in_flight[(connection, transfer)] = store_id
        self._sizes[(connection, transfer)] = len(bundle)
        self._queued[connection] = self._queued.get(connection, 0) + len(bundle)
        connection.flush_soon()

    def adopt(self, connection: _Connection) -> None:
        """An accepted session that belongs to this neighbour."""
        connection.on_events = self.on_events
        connection.on_drained = self._drained
        self._inbound.append(connection)

    def _drained(self) -> None:
        self.callbacks.changed(self.name)  # the node reports the smaller backlog to the agent


    def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        for connection in [self._outbound, *self._inbound]:
            if connection is not None:
                connection.close("node shutting down")

    # --- internals ------------------------------------------------------------------------------

    def _sender(self) -> _Connection | None:
        if self.connect:
            outbound = self._outbound
            return outbound if outbound in self._up and outbound.session.established else None
        for connection in reversed(self._inbound):
            if connection.session.established and connection in self._up:
                return connection
        return None

    async def _keep_connected(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _BACKOFF_FIRST
        while not self._closing:
            if self._retry_after is not None:
                await asyncio.sleep(self._retry_after)
                self._retry_after = None
            try:
                reader, writer = await asyncio.open_connection(*self.address)
            except OSError as exc:
                self.counters["connect_failed"] += 1
                log.debug("%s: connecting to %s: %s", self.name, self.address, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            self.counters["connected"] += 1
            connection = _Connection(self.make_session(True), reader, writer, self.on_events)
            connection.on_drained = self._drained
            self._outbound = connection
            started = loop.time()
            await connection.run()
            self._outbound = None
            if loop.time() - started > 2 * backoff:
                backoff = _BACKOFF_FIRST  # it held for a while: the next failure starts afresh
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def on_events(self, connection: _Connection, events: list) -> asyncio.Future | None:
        """A flush's events, passed on in one call of each kind; the future of the received
        bundles' commit, if any came."""
        received, acked, refused = [], [], []
        for event in events:
            if isinstance(event, BundleReceived):
                received.append(event.data)
            elif isinstance(event, BundleAcked | BundleRefused):
                store_id = self._settle(connection, event.transfer_id)
                if store_id is None:
                    continue
                if isinstance(event, BundleAcked):
                    acked.append(store_id)
                else:
                    self.counters["refused_by_peer"] += 1
                    refused.append(store_id)
            elif isinstance(event, SessionUp):
                self._up.add(connection)
                self.counters["sessions_up"] += 1
                self.callbacks.changed(self.name)
            elif isinstance(event, SessionClosed):
                self._on_closed(connection, event)
        if acked:
            self.callbacks.handed_over(self.name, acked)
        if refused:
            self.callbacks.not_handed_over(self.name, refused)
        return self.callbacks.bundles(self.name, received) if received else None

    def _on_closed(self, connection: _Connection, event: SessionClosed) -> None:
        self._up.discard(connection)
        if connection in self._inbound:
            self._inbound.remove(connection)
        self._queued.pop(connection, None)
        lost = [key for key in self._in_flight if key[0] is connection]
        store_ids = [self._in_flight.pop(key) for key in lost]
        for key in lost:
            self._sizes.pop(key, None)
        self.counters["sessions_closed"] += 1
        self.counters.update(connection.session.counters)  # why sessions ended, among others
        if event.reconnect_after is not None and connection is self._outbound:
            self._retry_after = min(event.reconnect_after, _BACKOFF_MAX * 10)
        log.info("%s: session with %s closed: %s", self.name, connection.remote, event.reason)
        if store_ids:
            self.callbacks.not_handed_over(self.name, store_ids)
        self.callbacks.changed(self.name)

    def _settle(self, connection: _Connection, transfer: int) -> int | None:
        key = (connection, transfer)
        store_id = self._in_flight.pop(key, None)
        size = self._sizes.pop(key, 0)
        if connection in self._queued:
            self._queued[connection] -= size
        return store_id


class StreamListener:
    """Accepts connections on one address for the neighbours that listen there."""

    def __init__(
        self,
        listen: Address,
        make_session: Callable[[bool], StreamSession],
        links: list[StreamLink],
    ) -> None:
        self.listen = listen
        self.make_session = make_session
        self.links = links
        self.counters: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._pending: set[_Connection] = set()
        self._open: dict[_Connection, None] = {}  # every accepted session, oldest first

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, *self.listen)
        self.listen = self._server.sockets[0].getsockname()[:2]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._pending):
            connection.close("node shutting down")

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_INBOUND:
            idle = next((c for c in self._open if not c.bundles_received), None)
            if idle is None:
                self.counters["refused_flood"] += 1
                writer.close()
                return
            self.counters["evicted_idle"] += 1
            del self._open[idle]
            idle.close("evicted: too many connections")
        connection = _Connection(self.make_session(False), reader, writer, self._unclaimed)
        self._pending.add(connection)
        self._open[connection] = None
        if len(self.links) == 1:
            self._claim(connection, self.links[0])
        try:
            await connection.run()
        finally:
            self._open.pop(connection, None)
            if connection in self._pending:  # never claimed: its reasons are counted here
                self._pending.discard(connection)
                self.counters.update(connection.session.counters)

    def _unclaimed(self, connection: _Connection, events: list) -> asyncio.Future | None:
        """Events of a session no neighbour has claimed yet: its SessionUp names the peer, and
        the neighbour takes them from there."""
        for index, event in enumerate(events):
            if isinstance(event, SessionUp):
                for link in self.links:
                    if link.node_id is not None and link.node_id == event.peer_eid:
                        self._claim(connection, link)
                        return link.on_events(connection, events[index:])
                self.counters["unknown_peer"] += 1
                connection.close("unknown peer")
                return None
            if isinstance(event, BundleReceived):
                self.counters["unclaimed_bundles"] += 1
        return None

    def _claim(self, connection: _Connection, link: StreamLink) -> None:
        self._pending.discard(connection)
        link.adopt(connection)
