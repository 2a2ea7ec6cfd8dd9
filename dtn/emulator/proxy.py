"""The UDP proxy: the asyncio shell around the channel model.

For each link it binds one UDP socket per side. What node A sends to A's `listen` address goes
through the a→b channel and is sent, at its delivery time, from B's `listen` socket to B's `node`
address, so B sees it come from the address it sends its own traffic to; the reverse direction
mirrors this. The shell holds no channel logic: it reads the clock, hands datagrams to
`ChannelDirection.submit`, keeps what comes out in an `InFlightQueue` and sends it when due.

Speed matters (a 256 kbit/s link at ×1000 is ~23,000 datagrams/s), so the hot paths avoid
per-datagram asyncio machinery: a readable socket is drained in one callback (`add_reader` on the
raw socket, not a DatagramProtocol, which pays an event-loop turn per datagram); one timer covers
all directions and each wakeup sends everything due; sends go straight to the socket and only an
EAGAIN parks the rest until the socket is writable.

Falling behind is reported, not hidden: a datagram sent more than `late_threshold` (wall) after
its delivery time counts as late, and the periodic check logs a warning when that count grows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from pathlib import Path

from dtn.clock import ScaledClock
from dtn.emulator.channel import ChannelDirection
from dtn.emulator.config import EmulatorConfig, LinkConfig, Side
from dtn.emulator.inflight import InFlightQueue, MemoryBudget, SpoolError
from dtn.emulator.stats import DirectionSnapshot

log = logging.getLogger("dtn.emulator")

MAX_DATAGRAM = 65_535
# Work per callback is bounded so that reading, sending and the other directions take turns
# often: a socket's receive buffer holds only a few milliseconds of traffic at full rate.
TURN_DATAGRAMS = 64
TURN_BYTES = 256 << 10
SEND_BATCH = 32  # datagrams taken from an in-flight queue at a time
EARLY_SEND = 0.00025  # wall seconds: send what is due this soon now, saving a timer wakeup
SOCKET_BUFFER = 4 << 20
PROXY_DROP_REASONS = ("receive_overflow", "send_error", "spool_error")
UDP_TABLE = Path("/proc/net/udp")


class _Direction:
    """One direction at run time: channel, in-flight queue, and where its datagrams go."""

    def __init__(
        self,
        link: LinkConfig,
        listen_side: str,
        source: Side,
        target: Side,
        channel: ChannelDirection,
        queue: InFlightQueue,
    ) -> None:
        self.link = link.name
        self.listen_side = listen_side  # "a" or "b": the side whose listen socket it reads
        self.label = f"{source.name}->{target.name}"
        self.channel = channel
        self.queue = queue
        self.destination = target.node
        self.send_socket: socket.socket | None = None
        self.outbox: list[tuple[float, bytes]] = []  # taken from the queue, not yet sent
        self.blocked = False  # waiting for the send socket to become writable
        self.datagrams_out = 0
        self.bytes_out = 0
        self.dropped = dict.fromkeys(PROXY_DROP_REASONS, 0)
        self.late = 0
        self.max_lateness = 0.0  # mission seconds


class EmulatorProxy:
    def __init__(self, config: EmulatorConfig, clock: ScaledClock | None = None) -> None:
        self.config = config
        self.clock = clock or config.clock()
        self._scale = self.clock.time_scale
        self._budget = MemoryBudget(config.memory_cap)
        self._sockets: dict[tuple[str, str], socket.socket] = {}
        self._directions: list[_Direction] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        for link in config.links:
            for name, side, source, target in (
                ("a_to_b", "a", link.a, link.b),
                ("b_to_a", "b", link.b, link.a),
            ):
                channel = ChannelDirection(getattr(link, name), config.direction_seed(link, name))
                queue = InFlightQueue(self._budget, config.spool_dir)
                self._directions.append(_Direction(link, side, source, target, channel, queue))

    def start(self) -> None:
        """Bind every listen socket and start relaying (call from within the running loop)."""
        self._loop = asyncio.get_running_loop()
        try:
            for link in self.config.links:
                for side_name, side in (("a", link.a), ("b", link.b)):
                    self._sockets[link.name, side_name] = _bind(side.listen, link.name, side_name)
        except OSError:
            self.close()
            raise
        for direction in self._directions:
            other_side = "b" if direction.listen_side == "a" else "a"
            receive_socket = self._sockets[direction.link, direction.listen_side]
            direction.send_socket = self._sockets[direction.link, other_side]
            self._loop.add_reader(
                receive_socket.fileno(), self._on_readable, receive_socket, direction
            )
            rate = direction.channel.params.rate
            log.info(
                "%s %s: listening on %s:%d, delivering to %s:%d; %s",
                direction.link,
                direction.label,
                *self.listen_address(direction.link, direction.listen_side),
                *direction.destination,
                f"{rate / 1e3:g} kbit/s mission time = {rate * self._scale / 1e6:g} Mbit/s wall"
                if rate
                else "no rate limit",
            )

    def listen_address(self, link: str, side: str) -> tuple[str, int]:
        """The address actually bound for a side ("a" or "b") of a link (port 0 resolved)."""
        return self._sockets[link, side].getsockname()

    def close(self) -> None:
        """Stop relaying; whatever is still in flight is dropped and the spool removed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in self._sockets.values():
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.close()
        self._sockets.clear()
        for direction in self._directions:
            direction.queue.close()

    def snapshots(self) -> list[DirectionSnapshot]:
        now = self.clock.now()
        overflows = _receive_overflows()
        result = []
        for direction in self._directions:
            receive_socket = self._sockets.get((direction.link, direction.listen_side))
            if receive_socket is not None and receive_socket.fileno() >= 0:
                inode = os.fstat(receive_socket.fileno()).st_ino
                direction.dropped["receive_overflow"] = overflows.get(inode, 0)
            channel_stats = direction.channel.stats
            queue_datagrams, queue_bytes = direction.channel.queue_depth(now)
            result.append(
                DirectionSnapshot(
                    link=direction.link,
                    direction=direction.label,
                    datagrams_in=channel_stats.datagrams_in,
                    bytes_in=channel_stats.bytes_in,
                    datagrams_out=direction.datagrams_out,
                    bytes_out=direction.bytes_out,
                    dropped={**channel_stats.dropped, **direction.dropped},
                    bits_flipped=channel_stats.bits_flipped,
                    datagrams_corrupted=channel_stats.datagrams_corrupted,
                    duplicated=channel_stats.duplicated,
                    reordered=channel_stats.reordered,
                    in_flight_datagrams=direction.queue.datagrams + len(direction.outbox),
                    in_flight_bytes=direction.queue.bytes
                    + sum(len(data) for _, data in direction.outbox),
                    spooled_bytes=direction.queue.spooled_bytes,
                    queue_datagrams=queue_datagrams,
                    queue_bytes=queue_bytes,
                    late_datagrams=direction.late,
                    max_lateness=direction.max_lateness / self._scale,
                    light_time=direction.channel.light_time(now),
                    link_up=direction.channel.link_up_at(now),
                )
            )
        return result

    # -- hot paths ---------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket, direction: _Direction) -> None:
        receive, clock_now = sock.recv, self.clock.now
        submit, push = direction.channel.submit, direction.queue.push
        received = 0
        for _ in range(TURN_DATAGRAMS):
            try:
                datagram = receive(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError as error:  # e.g. an ICMP error surfacing; the socket stays usable
                log.debug("%s %s: receive error %s", direction.link, direction.label, error)
                continue
            outcome = submit(datagram, clock_now())
            if type(outcome) is list:
                try:
                    for deliver_at, data in outcome:
                        push(deliver_at, data)
                except SpoolError as error:
                    self._spool_failed(direction, error)
            received += len(datagram)
            if received >= TURN_BYTES:
                break
        self._send_due(direction, clock_now())

    def _on_timer(self) -> None:
        self._timer, self._timer_due = None, math.inf
        now = self.clock.now()
        for direction in self._directions:
            self._send_due(direction, now)

    def _on_writable(self, direction: _Direction) -> None:
        self._loop.remove_writer(direction.send_socket.fileno())
        direction.blocked = False
        self._send_due(direction, self.clock.now())

    def _send_due(self, direction: _Direction, now: float) -> None:
        """Send what is due by `now` (plus EARLY_SEND), a turn's worth, and arm the timer for
        the rest."""
        if direction.blocked:
            return
        horizon = now + EARLY_SEND * self._scale
        late_before = now - self.config.late_threshold * self._scale
        send, destination = direction.send_socket.sendto, direction.destination
        sent = sent_bytes = 0
        try:
            while sent < TURN_DATAGRAMS and sent_bytes < TURN_BYTES:
                batch = direction.outbox or direction.queue.pop_due(horizon, SEND_BATCH)
                if not batch:
                    break
                sent += len(batch)
                direction.outbox = []
                for index, (deliver_at, data) in enumerate(batch):
                    try:
                        send(data, destination)
                    except BlockingIOError:
                        direction.outbox = batch[index:]
                        direction.blocked = True
                        self._loop.add_writer(
                            direction.send_socket.fileno(), self._on_writable, direction
                        )
                        return
                    except OSError as error:
                        direction.dropped["send_error"] += 1
                        log.debug("%s %s: send error %s", direction.link, direction.label, error)
                        continue
                    direction.datagrams_out += 1
                    direction.bytes_out += len(data)
                    sent_bytes += len(data)
                    if deliver_at < late_before:
                        direction.late += 1
                        direction.max_lateness = max(direction.max_lateness, now - deliver_at)
            self._arm_timer(direction.queue.next_due())
        except SpoolError as error:
            self._spool_failed(direction, error)
            self._arm_timer(direction.queue.next_due())

    def _spool_failed(self, direction: _Direction, error: SpoolError) -> None:
        direction.dropped["spool_error"] += error.lost
        log.error(
            "%s %s: %s; %d in-flight datagrams lost",
            direction.link,
            direction.label,
            error,
            error.lost,
        )

    def _arm_timer(self, due: float) -> None:
        if due >= self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_later(
            max(0.0, (due - self.clock.now()) / self._scale), self._on_timer
        )


def _bind(address: tuple[str, int], link: str, side: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # Room for bursts while the loop is busy elsewhere; the kernel caps it at rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno,
            f"cannot listen on {address[0]}:{address[1]} (link {link!r} side {side}): "
            f"{error.strerror}",
        ) from None
    return sock


def _receive_overflows() -> dict[int, int]:
    """Datagrams the kernel dropped because a socket's receive buffer was full, by socket inode.

    These never reach the proxy, so it cannot count them itself: they are what falling behind
    on input looks like. Read from /proc/net/udp (Linux); empty elsewhere.
    """
    try:
        lines = UDP_TABLE.read_text().splitlines()[1:]
    except OSError:
        return {}
    drops = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 13 and fields[9].isdigit() and fields[-1].isdigit():
            drops[int(fields[9])] = int(fields[-1])
    return drops
