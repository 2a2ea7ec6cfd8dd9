"""The node daemon: store + agent + payload pipeline + convergence layers + application API in
one asyncio process, on the shared scaled clock.

It holds no protocol logic. Each event-loop turn feeds the agent what came in (bundles from the
CLAs, submissions and acknowledgements from applications, timers, contact edges); one flush at
the end of the turn calls `agent.next_actions()`, which commits the store, and only then are
applications told "accepted", Transmits handed to the CLAs and Delivers offered to
applications. So nothing is acknowledged before it is durable (docs/agent.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from dtn import __version__
from dtn.agent import Agent, Deliver, Event, Router, Transmit
from dtn.agent.fragment import fragments_of
from dtn.api.service import ApiError, Delivery, SendRequest, Sink
from dtn.bundle import EID, Bundle, BundleError, BundleFlags, BundleId
from dtn.cla.ltp_link import LtpLink
from dtn.cla.stream_shell import StreamCallbacks
from dtn.cla.udp import UdpRsLink
from dtn.cla.udp_shell import DatagramEndpoint
from dtn.clock import unix_from_dtn_ms
from dtn.config import NodeConfig
from dtn.payload import PayloadPipeline, PayloadReason, PayloadRejected
from dtn.payload.compression import is_compression_block_data
from dtn.payload.large import FileSealer, SealedFile, open_file_steps
from dtn.store import BundleStore, StoreError, StoreFull
from dtn.store.schema import State

from .links import datagram_link
from .logs import log_event
from .streams import StreamLayers

MAX_OUTSTANDING = 256  # deliveries a client holds un-acknowledged before more are offered
# Payload bytes a client holds un-acknowledged before more are offered: well under the API
# server's outgoing queue (64 MiB), which disconnects a client it cannot write to.
MAX_OUTSTANDING_BYTES = 16 << 20
# Payload bytes of deliveries waiting for a client with room that are kept decoded, so that
# offering them later does not read and decode them again; beyond it, only their IDs.
_WAITING_KEPT = 32 << 20
_LARGE_BATCH = 8 << 20  # bytes of fragments of large data made durable at a time
# A large ADU opened for the application, in the store's payload directory until acked
# (not a row's file: a restart removes it, and opens the ADU again when it is offered again).
DELIVERED_SUFFIX = ".delivered"
_NARRATED = ("signals_sent", "signals_received", "retransmissions")


class Node:
    """One running node; implements dtn.api.service.Service for the API server."""

    def __init__(self, config: NodeConfig, log: logging.Logger) -> None:
        self.config = config
        self.log = log
        self.clock = config.clock()
        self.node_id = EID.parse(config.node_id)
        self.counters: Counter[str] = Counter()
        self.store = BundleStore(
            config.store_path, quota=config.quota(), synchronous=config.file.store.synchronous
        )
        self.links: dict[str, UdpRsLink | LtpLink] = {
            neighbour.name: datagram_link(config, neighbour)
            for neighbour in config.neighbours if not neighbour.streams
        }
        self.router = self._router()
        self.agent = self._agent()
        self.pipeline = PayloadPipeline(
            config.security_policy(), config.keyring(), self.node_id,
            compression_block_type=config.file.codepoints.compression_block,
        )
        self.streams = StreamLayers(
            config.neighbours,
            config.node_id,
            int(config.file.agent.max_bundle_size),
            config.path.parent.absolute(),
            StreamCallbacks(
                bundles=self._on_stream_bundles,
                handed_over=self._handed_over,
                not_handed_over=self._not_handed_over,
                changed=self._on_stream_change,
            ),
        )
        self.endpoints: dict[tuple[str, int], DatagramEndpoint] = {}
        self._peer_endpoint: dict[str, DatagramEndpoint] = {}
        self._durable: list[asyncio.Future] = []
        self._flush_pending = False
        self._acked: list[int] = []  # deliveries the applications took: to the agent at _flush
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._contact_timer: asyncio.TimerHandle | None = None
        self._up: set[str] = set()
        self._seen = Counter()
        # deliveries: waiting for a client, and handed out but not acked
        self._registered: dict[str, list[Sink]] = defaultdict(list)
        # Per endpoint, deliveries no client had room for: the Deliver action, or only its ID.
        self._waiting: dict[str, deque[Deliver | int]] = defaultdict(deque)
        self._waiting_kept = 0  # payload bytes of the actions kept in _waiting
        self._outstanding: dict[int, tuple[Sink, str]] = {}
        self._held: Counter[Sink] = Counter()
        self._held_bytes: Counter[Sink] = Counter()
        self._handed_bytes: dict[int, int] = {}  # by delivery id, of those handed over
        self._handed_files: set[int] = set()  # delivery ids handed over as an opened file
        self._watchers: dict[str, set[Sink]] = defaultdict(set)
        self._custody_told: set[str] = set()  # watched bundles whose custody_accepted went out
        self._opening: set[asyncio.Future] = set()  # large ADUs being opened for a client

    # === set-up ================================================================================

    def _router(self) -> Router:
        """The configured router, with link rates as the agent should pace them: bundle bytes,
        the CLA's framing and parity taken off."""
        router = self.config.router(self.clock.now())
        router.links = {
            name: replace(link, rate_bps=link.rate_bps * self.links[name].efficiency)
            if link.rate_bps and name in self.links
            else link
            for name, link in router.links.items()
        }
        return router

    def _agent(self) -> Agent:
        agent_config = self.config.agent_config()
        agent_config = replace(
            agent_config,
            extra_blocks={agent_config.codepoints.compression_block: is_compression_block_data},
        )
        return Agent(self.node_id, self.store, self.router, agent_config)

    async def start(self) -> None:
        await self.streams.start()
        for neighbour in self.config.neighbours:
            if neighbour.streams:
                continue
            endpoint = self.endpoints.get(neighbour.listen)
            if endpoint is None:
                endpoint = DatagramEndpoint(neighbour.listen, self.clock,
                                            self._on_datagram_bundles, self._on_link_activity)
                await endpoint.start()
                self.endpoints[neighbour.listen] = endpoint
            link = self.links[neighbour.name]
            endpoint.add_peer(neighbour.name, neighbour.address, link,
                              any_port=isinstance(link, LtpLink))
            self._peer_endpoint[neighbour.name] = endpoint
        self._contacts()
        self._kick()

    def close(self) -> None:
        self._closed = True
        for handle in (self._timer, self._contact_timer):
            if handle is not None:
                handle.cancel()
        for endpoint in self.endpoints.values():
            endpoint.close()
        self.streams.close()
        try:
            self.agent.delivered_many(self._acked, self.clock.now())
            self.agent.next_actions()
        except StoreError as exc:
            log_event(self.log, "store_error", str(exc), logging.ERROR)
        self.store.close()

    # === contacts ==============================================================================

    def _contacts(self) -> None:
        """Bring links up and down as the contact plan says (unplanned links: always up), a
        stream link only while it has a session to send on."""
        now = self.clock.now()
        plan = self.router.plan
        streams = self.streams.links
        for name in [*self.links, *streams]:
            up = plan.is_up(name, now) if plan.plans(name) else True
            up = up and (name not in streams or streams[name].ready)
            link = self.links.get(name)
            if up and name not in self._up:
                self._up.add(name)
                if isinstance(link, LtpLink):
                    link.contact_up(now)  # its timers run again
                # Before the first pump: an unpaced layer is held to `unpaced_queue` only once
                # its backlog is known (else a reconnection read every stored bundle at once).
                self.agent.link_backlog(name, (link or streams[name]).queued_bytes, now)
                self.agent.contact_up(name, now)
                log_event(self.log, "contact_up", f"link to {name} is up", neighbour=name)
            elif not up and name in self._up:
                self._up.discard(name)
                if isinstance(link, LtpLink):
                    link.contact_down(now)
                self.agent.contact_down(name, now)
                log_event(self.log, "contact_down", f"link to {name} is down", neighbour=name)
        edge = plan.next_transition(now)
        if self._contact_timer is not None:
            self._contact_timer.cancel()
            self._contact_timer = None
        if edge is not None:
            delay = self.clock.wall_seconds_until(edge[0])
            self._contact_timer = asyncio.get_running_loop().call_later(delay, self._on_edge)

    def _on_edge(self) -> None:
        self._contacts()
        self._kick()

    # === the turn ==============================================================================

    def _kick(self) -> None:
        """Flush once at the end of this event-loop turn, whatever came in during it."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._closed:
            return
        durable, self._durable = self._durable, []
        self._report_backlogs()
        try:
            if self._acked:
                acked, self._acked = self._acked, []
                self.agent.delivered_many(acked, self.clock.now())
            actions = self.agent.next_actions()
        except StoreError as exc:
            # The group is lost and nobody was told: start again from what the store holds.
            log_event(self.log, "store_error", f"{exc}; rebuilding the agent", logging.ERROR)
            self.agent = self._agent()
            for name in self._up:
                self.agent.contact_up(name, self.clock.now())
            for future in durable:
                if not future.done():
                    future.set_exception(ApiError("internal", f"store commit failed: {exc}"))
            self._kick()
            return
        for future in durable:
            if not future.done():
                future.set_result(None)
        debug = self.log.isEnabledFor(logging.DEBUG)  # formatting costs, per bundle
        for action in actions:
            if isinstance(action, Transmit):
                self._transmit(action)
                if self._watchers:
                    self._notify(str(action.bundle_id), "forwarded", f"to {action.neighbour}")
                if debug:
                    log_event(self.log, "forwarded", f"{action.bundle_id} to {action.neighbour}",
                              logging.DEBUG, bundle=str(action.bundle_id),
                              neighbour=action.neighbour)
            elif isinstance(action, Deliver):
                self._on_deliver(action)
            else:
                self._on_event(action)
        self._narrate()
        self._arm_timer()

    def _transmit(self, action: Transmit) -> None:
        name = action.neighbour
        stream = self.streams.links.get(name)
        link = self.links.get(name)
        if stream is not None:
            stream.send(action.data, action.store_id)
        elif isinstance(link, LtpLink):
            link.send(action.data, action.store_id, self.clock.now())
            self._peer_endpoint[name].wake(name)
        else:
            self._peer_endpoint[name].send(name, action.data)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.agent.next_deadline()
        if deadline is not None:
            delay = self.clock.wall_seconds_until(deadline)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._report_backlogs()
        self.agent.timer(self.clock.now())
        self._kick()

    def _report_backlogs(self) -> None:
        """Tell the agent what each link's convergence layer still holds (its pacing)."""
        now = self.clock.now()
        for name in self._up:
            link = self.links.get(name) or self.streams.links[name]
            self.agent.link_backlog(name, link.queued_bytes, now)

    # === stream layers =========================================================================

    def _on_datagram_bundles(self, neighbour: str, bundles: list[bytes]) -> asyncio.Future | None:
        """Bundles from udp-rs (custody answers them once stored), or from LTP (whose report
        must wait for the store: the endpoint holds the link until the future is done)."""
        if isinstance(self.links[neighbour], LtpLink):
            return self._on_stream_bundles(neighbour, bundles)
        self._on_bundles(neighbour, bundles)
        return None

    def _on_link_activity(self, neighbour: str) -> None:
        """An LTP link may have settled blocks: tell the agent which bundles the neighbour has,
        and which go again."""
        link = self.links[neighbour]
        if self._closed or not isinstance(link, LtpLink):
            return
        handed, lost = link.outcomes()
        if handed:
            self._handed_over(neighbour, handed)
        if lost:
            self._not_handed_over(neighbour, lost)

    def _on_stream_bundles(self, neighbour: str, bundles: list[bytes]) -> asyncio.Future:
        """Bundles from a stream layer; the future is done once they are durable (the layer
        acknowledges them to the peer only then)."""
        self._on_bundles(neighbour, bundles)
        durable = asyncio.get_running_loop().create_future()
        self._durable.append(durable)
        return durable

    def _handed_over(self, neighbour: str, store_ids: list[int]) -> None:
        if not self._closed:
            self.agent.handed_over(neighbour, store_ids, self.clock.now())
            self._kick()

    def _not_handed_over(self, neighbour: str, store_ids: list[int]) -> None:
        if not self._closed:
            self.agent.not_handed_over(neighbour, store_ids, self.clock.now())
            self._kick()

    def _on_stream_change(self, neighbour: str) -> None:
        """A stream link gained or lost its session, or sent what it held."""
        if not self._closed:
            self._contacts()
            self._kick()

    def _on_bundles(self, neighbour: str, bundles: list[bytes]) -> None:
        if self._closed:
            return
        self.agent.receive_many(bundles, neighbour, self.clock.now())
        self._kick()

    def _narrate(self) -> None:
        counters = self.agent.counters
        for name in _NARRATED:
            change = counters[name] - self._seen[name]
            if change:
                self._seen[name] = counters[name]
                log_event(self.log, name, f"{change} (total {counters[name]})", count=change)

    def _on_event(self, event: Event) -> None:
        bundle = None if event.bundle_id is None else str(event.bundle_id)
        level = logging.WARNING if event.name in ("malformed", "refused") else logging.INFO
        if event.name == "duplicate":
            level = logging.DEBUG
        log_event(self.log, event.name, f"{bundle or ''} {event.detail}".strip(), level,
                  bundle=bundle, detail=event.detail)
        if event.name == "custody_released":
            self._custody_released()
        elif event.name == "status_report" and bundle is not None:
            for assertion in event.detail.split(":")[0].split(","):
                self._notify(bundle, assertion, event.detail)
        elif bundle is not None and event.name in ("expired", "refused"):
            self._notify(bundle, event.name, event.detail)

    def _custody_released(self) -> None:
        """Tell watchers of bundles now released by the next custodian."""
        for bundle_id in list(self._watchers):
            if bundle_id in self._custody_told:
                continue
            known = self.store.known(bundle_id)
            if known is not None and known[0] == State.DONE:
                self._custody_told.add(bundle_id)
                self._notify(bundle_id, "custody_accepted", "by the next hop")

    def _watch_from_acceptance(self, bundle_id: BundleId, request: SendRequest) -> None:
        """A send asking to watch its bundle: its watcher is in place before the commit that
        lets the bundle go out, so it hears of the first transmission too."""
        if request.watcher is not None:
            self.watch(str(bundle_id), request.watcher)

    def _notify(self, bundle_id: str, name: str, detail: str) -> None:
        sinks = self._watchers.get(bundle_id)
        if sinks:
            now = self.clock.now()
            for sink in sinks:
                sink.event(bundle_id, name, now, detail)
            if name in ("delivered", "expired", "deleted", "refused"):
                del self._watchers[bundle_id]
                self._custody_told.discard(bundle_id)

    # === delivery ==============================================================================

    def _on_deliver(self, action: Deliver) -> None:
        if action.is_admin_record:  # for an endpoint of ours that no application handles
            self.agent.delivered(action.delivery_id, self.clock.now())
            self._kick()
            return
        endpoint = action.endpoint
        if self._offer(endpoint, action.delivery_id, action) is None:
            keep = self._waiting_kept + len(action.payload) <= _WAITING_KEPT
            self._waiting_kept += len(action.payload) if keep else 0
            self._waiting[endpoint].append(action if keep else action.delivery_id)

    def _offer(
        self, endpoint: str, delivery_id: int, action: Deliver | None, *, waited: bool = False
    ) -> Sink | None:
        """Hand one stored bundle to a registered client with room; the client, or None.
        Without `action`, the bundle is read from the store; `waited`: the action is one that
        waited in _waiting, and the bundle may have expired meanwhile."""
        sink = next(
            (
                s
                for s in self._registered.get(endpoint, ())
                if self._held[s] < MAX_OUTSTANDING and self._held_bytes[s] < MAX_OUTSTANDING_BYTES
            ),
            None,
        )
        if sink is None:
            return None
        if waited and self.store.state(delivery_id) != State.DELIVERABLE:
            return sink  # expired meanwhile: nothing to hand over
        if action is None:
            row = self.store.get(delivery_id)
            if row is None or row.state != State.DELIVERABLE:
                return sink  # gone meanwhile (expired): nothing to hand over
            bundle, payload_file = Bundle.decode(row.data), row.file
        else:
            bundle, payload_file = action.bundle, action.payload_file
        self._outstanding[delivery_id] = (sink, endpoint)
        self._held[sink] += 1
        if payload_file is not None:
            task = asyncio.ensure_future(
                self._offer_file(sink, endpoint, delivery_id, bundle, payload_file)
            )
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
            return sink
        try:
            data = self.pipeline.deliver(bundle)
        except (PayloadRejected, BundleError) as exc:
            self._not_deliverable(delivery_id, bundle, exc)
            return sink
        self._hand_over(sink, endpoint, delivery_id, bundle, data, None)
        return sink

    async def _offer_file(
        self, sink: Sink, endpoint: str, delivery_id: int, bundle: Bundle, payload: Path
    ) -> None:
        """_offer for a large ADU: opened into a file of its own piece by piece, the event
        loop running between pieces; the client gets the file's path."""
        out = self.store.payload_dir / f"{delivery_id}{DELIVERED_SUFFIX}"
        steps = open_file_steps(self.pipeline, bundle, payload, out, self.store_limit())
        try:
            while True:
                next(steps)
                await asyncio.sleep(0)
        except StopIteration as done:
            size = done.value
        except (PayloadRejected, OSError) as exc:
            self._not_deliverable(delivery_id, bundle, exc)
            return
        if self._closed or self._outstanding.get(delivery_id) != (sink, endpoint):
            out.unlink(missing_ok=True)  # the client went meanwhile: offered again later
            return
        self._hand_over(sink, endpoint, delivery_id, bundle, b"", (out, size))

    def store_limit(self) -> int:
        """The largest ADU this node opens for an application: what its store may hold."""
        quota = self.store.quota.max_bytes
        return 2**63 if quota is None else quota

    def _hand_over(
        self,
        sink: Sink,
        endpoint: str,
        delivery_id: int,
        bundle: Bundle,
        data: bytes,
        file: tuple[Path, int] | None,
    ) -> None:
        primary = bundle.primary
        created = unix_from_dtn_ms(primary.creation_time) if primary.creation_time else 0.0
        path, size = (None, len(data)) if file is None else (str(file[0]), file[1])
        self._handed_bytes[delivery_id] = len(data)
        if file is not None:
            self._handed_files.add(delivery_id)
        self._held_bytes[sink] += len(data)
        sink.deliver(
            Delivery(
                endpoint, delivery_id, str(bundle.id), str(primary.source), data, created, path
            )
        )
        self.counters["offered"] += 1
        if self.log.isEnabledFor(logging.INFO):
            log_event(self.log, "delivered", f"{bundle.id} to {endpoint}, {size} B",
                      bundle=str(bundle.id), endpoint=endpoint, size=size)

    def _not_deliverable(self, delivery_id: int, bundle: Bundle, exc: Exception) -> None:
        """A bundle whose payload must not reach the application: logged and dropped."""
        held = self._outstanding.pop(delivery_id, None)
        if held is not None:
            self._held[held[0]] -= 1
        self.counters["payload_rejected"] += 1
        log_event(self.log, "rejected", f"{bundle.id}: {exc}", logging.WARNING,
                  bundle=str(bundle.id))
        self.agent.delivered(delivery_id, self.clock.now(), refused=True)  # not reported
        self._kick()

    def _pump(self, endpoint: str) -> None:
        waiting = self._waiting.get(endpoint)
        while waiting:
            item = waiting[0]
            action = None if isinstance(item, int) else item
            delivery_id = item if action is None else action.delivery_id
            if self._offer(endpoint, delivery_id, action, waited=action is not None) is None:
                return
            if action is not None:
                self._waiting_kept -= len(action.payload)
            waiting.popleft()

    # === Service: what the API server calls =====================================================

    def hello(self) -> dict:
        return {
            "node_id": str(self.node_id),
            "version": __version__,
            "time_scale": self.clock.time_scale,
            "epoch": self.clock.epoch,
            "now": self.clock.now(),
        }

    def _bundle_fields(self, request: SendRequest) -> dict:
        """PayloadPipeline.send's keyword arguments for a request (and source, destination),
        checked: ApiError for a request no bundle can be made of."""
        try:
            destination = EID.parse(request.destination)
            source = self.node_id if request.source is None else EID.parse(request.source)
        except (BundleError, ValueError) as exc:
            raise ApiError("bad_request", str(exc)) from None
        if source.node_id != self.node_id:
            raise ApiError("bad_endpoint", f"{source} is not an endpoint of {self.node_id}")
        if not 0 <= request.priority <= 2:
            raise ApiError("bad_request", f"priority must be 0, 1 or 2, got {request.priority}")
        lifetime = self.agent.config.default_lifetime
        if request.lifetime is not None:
            if not 0 < request.lifetime < 2**40:
                raise ApiError("bad_request", f"lifetime must be > 0 s, got {request.lifetime}")
            lifetime = request.lifetime
        creation_time, sequence = self.agent.next_creation(self.clock.now())
        return {
            "source": source,
            "destination": destination,
            "creation_time": creation_time,
            "sequence": sequence,
            "lifetime": round(lifetime * 1000),
            "report_to": self.node_id if request.report else None,
            "flags": int(BundleFlags.REPORT_DELIVERY) if request.report else 0,
        }

    async def send(self, request: SendRequest) -> str:
        fields = self._bundle_fields(request)
        with self._submission(fields["destination"]):
            bundle = self.pipeline.send(request.data, **fields)
            self.agent.submit_bundle(
                bundle, self.clock.now(), priority=request.priority, custody=request.custody
            )
        self._watch_from_acceptance(bundle.id, request)
        await self._durable_now()
        return self._accepted(bundle.id, fields["destination"], len(request.data))

    async def send_stream(self, request: SendRequest, chunks: AsyncIterator[bytes]) -> str:
        """A streamed send: up to `large_adu` bytes gathered into one bundle; above it, sealed
        into a spool file as the chunks come and sent as fragments (`send_large`)."""
        if request.size is not None and request.size > self.agent.config.large_adu:
            return await self.send_large(request, chunks)
        limit = self.pipeline.max_payload
        if request.size is not None and request.size > limit:
            raise ApiError("too_large", f"{request.size} bytes is above the maximum {limit}")
        parts, size = [], 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ApiError("too_large", f"stream is above the maximum of {limit} bytes")
            parts.append(chunk)
        return await self.send(replace(request, data=b"".join(parts)))

    async def send_large(self, request: SendRequest, chunks: AsyncIterator[bytes]) -> str:
        """Data too large to hold: compressed and encrypted into a spool file chunk by chunk,
        then cut into RFC 9171 fragments of `fragment_size`, made durable a few at a time.
        The bundle ID is returned once every fragment is; a crash before that leaves
        fragments nobody was told about, which expire (docs/node.md, Large data)."""
        fields = self._bundle_fields(request)
        destination, size = fields["destination"], request.size
        quota = self.store.quota.max_bytes
        if quota is not None and self.store.bytes_used + size > quota:
            self.counters["store_full"] += 1
            raise ApiError(
                "store_full",
                f"store full: {self.store.bytes_used} + up to {size} bytes exceeds the quota "
                f"of {quota} bytes",
            )
        spool = self.store.spool_path()
        with self._submission(destination):
            sealer = FileSealer(self.pipeline, spool, size, Bundle.create(payload=b"", **fields))
        try:
            async for chunk in chunks:
                sealer.write(chunk)
            sealed = sealer.finish()
            self._watch_from_acceptance(sealed.bundle.id, request)
            await self._submit_fragments(sealed, request)
        except ValueError as exc:  # the stream broke its announced size
            raise ApiError("bad_request", str(exc)) from None
        finally:
            sealer.abort()  # the spool: every fragment made of it is in the store by now
        return self._accepted(sealed.bundle.id, destination, size)

    async def _submit_fragments(self, sealed: SealedFile, request: SendRequest) -> None:
        config = self.agent.config
        pending = 0
        with open(sealed.path, "rb") as spool:

            def read(position: int, count: int) -> bytes:
                spool.seek(position)
                return spool.read(count)

            pieces = fragments_of(sealed.bundle, sealed.length, read, config.fragment_size)
            for piece in pieces:
                with self._submission(sealed.bundle.primary.destination):
                    self.agent.submit_bundle(
                        piece, self.clock.now(), priority=request.priority,
                        custody=request.custody,
                    )
                pending += len(piece.payload)
                if pending >= _LARGE_BATCH:  # durable before more is read: bounded memory
                    await self._durable_now()
                    pending = 0
        await self._durable_now()

    @contextmanager
    def _submission(self, destination: EID) -> Iterator[None]:
        """What a refused submission tells the application."""
        try:
            yield
        except PayloadRejected as exc:
            code = "too_large" if exc.reason == PayloadReason.TOO_LARGE else "bad_request"
            raise ApiError(code, str(exc)) from None
        except StoreFull as exc:
            self.counters["store_full"] += 1
            log_event(self.log, "rejected", f"submission to {destination}: {exc}",
                      logging.WARNING)
            raise ApiError("store_full", str(exc)) from None

    async def _durable_now(self) -> None:
        """Returns once what was submitted so far is committed."""
        future = asyncio.get_running_loop().create_future()
        self._durable.append(future)
        self._kick()
        await future

    def _accepted(self, bundle_id: object, destination: EID, size: int) -> str:
        text = str(bundle_id)
        if self.log.isEnabledFor(logging.INFO):
            log_event(self.log, "accepted", f"{text} for {destination}, {size} B",
                      bundle=text, destination=str(destination), size=size)
        return text

    def register(self, endpoint: str, sink: Sink) -> None:
        try:
            eid = EID.parse(endpoint)
        except (BundleError, ValueError) as exc:
            raise ApiError("bad_endpoint", str(exc)) from None
        if eid.node_id != self.node_id:
            raise ApiError("bad_endpoint", f"{endpoint} is not an endpoint of {self.node_id}")
        text = str(eid)
        if sink not in self._registered[text]:
            self._registered[text].append(sink)
        log_event(self.log, "registered", text, endpoint=text)
        self._pump(text)

    def unregister(self, endpoint: str, sink: Sink) -> None:
        sinks = self._registered.get(endpoint, [])
        if sink in sinks:
            sinks.remove(sink)

    def ack(self, sink: Sink, delivery: int) -> None:
        held = self._outstanding.get(delivery)
        if held is None or held[0] is not sink:
            raise ApiError("not_found", f"no delivery {delivery} outstanding on this connection")
        del self._outstanding[delivery]
        self._held[sink] -= 1
        self._held_bytes[sink] -= self._handed_bytes.pop(delivery, 0)
        if delivery in self._handed_files:  # a large ADU's opened file, unless the client took it
            self._handed_files.discard(delivery)
            (self.store.payload_dir / f"{delivery}{DELIVERED_SUFFIX}").unlink(missing_ok=True)
        self._acked.append(delivery)  # one statement for the acks of a turn, at the flush
        self._kick()
        self._pump(held[1])

    def watch(self, bundle_id: str, sink: Sink) -> None:
        self._watchers[bundle_id].add(sink)

    def disconnected(self, sink: Sink) -> None:
        for sinks in self._registered.values():
            if sink in sinks:
                sinks.remove(sink)
        for sinks in self._watchers.values():
            sinks.discard(sink)
        back = defaultdict(list)
        for delivery, (holder, endpoint) in list(self._outstanding.items()):
            if holder is sink:
                del self._outstanding[delivery]
                self._handed_bytes.pop(delivery, None)
                self._handed_files.discard(delivery)
                back[endpoint].append(delivery)
        self._held.pop(sink, None)
        self._held_bytes.pop(sink, None)
        for endpoint, deliveries in back.items():
            self._waiting[endpoint].extendleft(reversed(sorted(deliveries)))
            self._pump(endpoint)

    def status(self) -> dict:
        now = self.clock.now()
        by_state = self.store.count_by_state()
        links = {}
        for name, link in self.links.items():
            counters = link.counters
            if isinstance(link, LtpLink):
                links[name] = self._link_status(name, link.queued_bytes, now) | {
                    "rate_bps": link.rate_bps, **counters, **link.engine_counters
                }
                continue
            links[name] = self._link_status(name, link.queued_bytes, now) | {
                "rate_bps": link.rate_bps,
                "bundles_out": counters.bundles_out,
                "bundles_in": counters.bundles_in,
                "datagrams_out": counters.datagrams_out,
                "datagrams_in": counters.datagrams_in,
                "frames_corrected": counters.fec.frames_corrected,
                "frames_dropped": dict(counters.fec.frames_dropped),
            }
        for name, stream in self.streams.links.items():
            links[name] = self._link_status(name, stream.queued_bytes, now) | {
                "session": stream.ready, **stream.counters
            }
        return {
            "node_id": str(self.node_id),
            "now": now,
            "store": {
                "bundles": self.store.bundle_count,
                "bytes": self.store.bytes_used,
                "by_state": {state.name.lower(): list(v) for state, v in by_state.items()},
                "quota_bytes": self.store.quota.max_bytes,
                "quota_bundles": self.store.quota.max_bundles,
            },
            "custody_in_flight": by_state.get(State.IN_FLIGHT, (0, 0))[0],
            "agent": dict(self.agent.counters),
            "node": dict(self.counters),
            "links": links,
            "cla": {f"{h}:{p}": dict(e.counters) for (h, p), e in self.endpoints.items()}
            | self.streams.counters(),
            "waiting_for_application": {e: len(q) for e, q in self._waiting.items() if q},
        }

    def _link_status(self, name: str, queued_bytes: int, now: float) -> dict:
        contact = self.router.plan.current_or_next(name, now)
        return {
            "up": name in self._up,
            "light_time": self.router.link(name, now).owlt,
            "queued_bytes": queued_bytes,
            "next_contact": None if contact is None else [contact.start, contact.end],
        }

    def bundles(self, limit: int) -> list[dict]:
        return [
            {
                "id": row.id,
                "bundle_id": row.key,
                "state": row.state.name.lower(),
                "next_hop": row.next_hop,
                "priority": row.priority,
                "size": row.size,
                "expires": row.expires,
                "retransmit_at": row.retransmit_at,
            }
            for row in self.store.listing(limit)
        ]
