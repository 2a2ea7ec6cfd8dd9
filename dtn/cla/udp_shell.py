"""The asyncio shell of the datagram convergence layers (udp-rs, ltp, ltp+rs): one UDP socket,
the peers reached through it, each with its sans-I/O link (`DatagramLink`).

Datagrams are sent *from* the listen socket to each peer's address, and datagrams arriving
*from* a peer's address belong to that peer (the link emulator delivers a side's traffic from
the socket that side sends to, so this holds with and without it); an LTP peer's from any port
of its host (`add_peer(any_port=True)`). Datagrams from anywhere else are counted
(`unknown_peer`) and dropped.

As the emulator's proxy does (docs/emulator.md), the socket is read with `add_reader` and
drained up to a bound per callback, so a turn of the event loop takes a batch, decoded in one
call; sends go straight to the socket and park on EAGAIN until it is writable. Everything timed
is mission time in the core; one timer, converted to wall time with the shared clock, drives it.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from dtn.clock import ScaledClock

Address = tuple[str, int]
_READ_BATCH = 256  # datagrams read per callback at most, so other sockets get their turn
_SOCKET_BUFFER = 8 << 20
_MAX_DATAGRAM = 65_535


class DatagramLink(Protocol):
    """What the endpoint drives: UdpRsLink, LtpLink."""

    def datagrams_to_send(self, now: float) -> list[bytes]: ...

    def receive_datagrams(self, datagrams: Sequence[bytes], now: float) -> list[bytes]: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...


class DatagramEndpoint:
    """`on_bundles(name, bundles)` may return a future: until it is done (the bundles are in
    the store) nothing more goes to that peer, so no LTP report claims what a crash could
    still lose. `on_activity(name)` is called after each batch received from a peer and each
    timer, so the node can read what the link has settled (LtpLink.outcomes)."""

    def __init__(
        self,
        listen: Address,
        clock: ScaledClock,
        on_bundles: Callable[[str, list[bytes]], asyncio.Future | None],
        on_activity: Callable[[str], None] | None = None,
    ) -> None:
        self.listen = listen
        self.clock = clock
        self.on_bundles = on_bundles
        self.on_activity = on_activity
        self.counters: Counter[str] = Counter()
        self._peers: dict[Address, str] = {}
        self._any_port: dict[str, str] = {}  # host -> the one peer taken from any port of it
        self._links: dict[str, DatagramLink] = {}
        self._gates: dict[str, asyncio.Future] = {}  # peers held until their bundles are stored
        self._addresses: dict[str, Address] = {}
        self._parked: dict[str, list[bytes]] = {}  # datagrams the kernel would not take yet
        self._sent: set[str] = set()  # peers given bundles this turn, not yet pumped
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            sock.setblocking(False)
            sock.bind(self.listen)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.listen = sock.getsockname()
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def add_peer(self, name: str, address: Address, link: DatagramLink,
                 any_port: bool = False) -> None:
        """`any_port`: datagrams from any port of the peer's host are its (ION's udplso sends
        from a port the OS picks, not the one its udplsi listens on); for one such peer a
        host at most (give two their own listen addresses), and the link must check what it
        gets (LTP checks engine and session)."""
        self._peers[address] = name
        if any_port:  # two on one host: neither is taken from unknown ports ("" matches none)
            self._any_port[address[0]] = "" if address[0] in self._any_port else name
        self._links[name] = link
        self._addresses[name] = address

    def link(self, name: str) -> DatagramLink:
        return self._links[name]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None

    # === sending ===============================================================================

    def send(self, name: str, bundle: bytes) -> None:
        """Queue one bundle for a udp-rs peer (see wake)."""
        try:
            self._links[name].send(bundle, self.clock.now())
        except ValueError:
            self.counters["send_refused"] += 1  # counted by the link too; custody will retry
            return
        self.wake(name)

    def wake(self, name: str) -> None:
        """The peer's link was given something to send: what pacing allows goes out at the end
        of this turn of the event loop, with the rest queued in it (its frames coded together)."""
        if not self._sent:
            self._loop.call_soon(self._pump_sent)
        self._sent.add(name)

    def _pump_sent(self) -> None:
        names, self._sent = self._sent, set()
        if self._sock is None:
            return
        now = self.clock.now()
        for name in names:
            self._pump(name, now)
        self._arm()

    def _pump(self, name: str, now: float) -> None:
        if name in self._parked or name in self._gates:
            return  # the socket is full, or received bundles are not stored yet: wait
        datagrams = self._links[name].datagrams_to_send(now)
        if datagrams:
            self._write(name, datagrams)

    def _write(self, name: str, datagrams: list[bytes]) -> None:
        sock, address = self._sock, self._addresses[name]
        if sock is None:
            return
        for index, datagram in enumerate(datagrams):
            try:
                sock.sendto(datagram, address)
            except BlockingIOError:
                self._parked[name] = datagrams[index:]
                self._loop.add_writer(sock.fileno(), self._on_writable)
                return
            except OSError:
                self.counters["send_error"] += 1  # e.g. nobody listens yet: the link loses it

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        parked, self._parked = self._parked, {}
        for name, datagrams in parked.items():
            self._write(name, datagrams)
        now = self.clock.now()
        for name in parked:
            self._pump(name, now)
        self._arm()

    # === receiving =============================================================================

    def _on_readable(self) -> None:
        sock = self._sock
        batches: dict[str, list[bytes]] = {}
        for _ in range(_READ_BATCH):
            try:
                data, source = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters["receive_error"] += 1  # e.g. ICMP port unreachable
                continue
            name = self._peers.get(source) or self._any_port.get(source[0])
            if name is None:
                self.counters["unknown_peer"] += 1
                continue
            batches.setdefault(name, []).append(data)
        if not batches:
            return
        now = self.clock.now()
        for name, datagrams in batches.items():
            bundles = self._links[name].receive_datagrams(datagrams, now)
            if bundles:
                self._hold(name, self.on_bundles(name, bundles))
            if self.on_activity is not None:
                self.on_activity(name)
        self._arm()

    def _hold(self, name: str, stored: asyncio.Future | None) -> None:
        if stored is None or stored.done():
            return
        previous = self._gates.get(name)
        gate = stored if previous is None else asyncio.gather(previous, stored)
        self._gates[name] = gate

        def release(done: asyncio.Future) -> None:
            if self._gates.get(name) is done:
                del self._gates[name]
                if done.cancelled() or done.exception() is not None:
                    self.counters["store_failed"] += 1  # the peer's timers send them again
                self.wake(name)

        gate.add_done_callback(release)

    # === time ==================================================================================

    def _arm(self) -> None:
        if self._parked:
            return  # _on_writable arms again once the socket drains
        deadline = min(
            (d for d in (link.next_deadline() for link in self._links.values()) if d is not None),
            default=None,
        )
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(self.clock.wall_seconds_until(deadline), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self.clock.now()
        for name, link in self._links.items():
            link.handle_timer(now)
            self._pump(name, now)
            if self.on_activity is not None:
                self.on_activity(name)
        self._arm()
