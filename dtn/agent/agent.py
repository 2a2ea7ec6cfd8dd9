"""The bundle protocol agent (RFC 9171 section 5) with hop-by-hop custody transfer. Sans-I/O.

Like aioquic's QuicConnection, three kinds of input drive it, each taking `now` (mission Unix
seconds, float) from the shell:

- API calls: `submit()` / `submit_bundle()` from applications, `delivered()` once an
  application has taken a delivered payload;
- the network: `receive(data, neighbour, now)` for each bundle a convergence layer received,
  `contact_up(neighbour, now)` / `contact_down(neighbour, now)` as links come and go;
- time: `timer(now)` when `next_deadline()` is reached.

Output is read with `next_actions()`: it first commits the store (one transaction, one fsync,
for every bundle accepted since the last call), then returns the Transmit / Deliver / Event
actions staged meanwhile. So nothing that acknowledges a bundle, to an application or as a
custody signal to the previous custodian, can leave before the bundle is durable. The shell
calls it once per event-loop turn, after feeding that turn's inputs, and tells an application
"accepted" only after it returned. Custody dispositions join the signal aggregator only after
the commit, and a signal goes out `signal_delay` later, gathering the others.

The store is the agent's memory: a bundle's state, next hop, custody ID (its store ID) and
custody timer live in its row, so an agent rebuilt from the store after a crash carries on;
in memory there are only per-neighbour figures and bounded caches.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from dtn.bundle import (
    EID,
    BlockFlags,
    BlockType,
    Bundle,
    BundleError,
    BundleFlags,
    BundleId,
    CanonicalBlock,
    CRCType,
    PrimaryBlock,
    ReasonCode,
    StatusReport,
    decode_bundle_age,
    decode_hop_count,
    decode_status_report,
    record_type,
)
from dtn.bundle.admin import DELETED, DELIVERED, FORWARDED, RECEIVED, STATUS_REPORT
from dtn.bundle.decoder import trusted_primary
from dtn.bundle.extensions import HopCount, encode_bundle_age
from dtn.clock import dtn_time_ms, unix_from_dtn_ms
from dtn.store import BundleStore, DuplicateBundle, NewBundle, State, StoredBundle, StoreFull

from .actions import Action, Deliver, Event, Transmit
from .config import AgentConfig
from .custody import (
    CUSTODY_BLOCK_FLAGS,
    CustodyBlock,
    CustodyReason,
    CustodySignal,
    SignalAggregator,
)
from .fragment import (
    Coverage,
    FragmentError,
    adu_key,
    fragment,
    reassemble,
    reassemble_into,
)
from .linkclock import LinkClock
from .routing import Link, Router

# Plain ints: an IntFlag operation costs a microsecond, and these run per bundle.
_ADMIN = int(BundleFlags.ADMIN_RECORD)
_FRAGMENT = int(BundleFlags.IS_FRAGMENT)
_REPORT_RECEPTION = int(BundleFlags.REPORT_RECEPTION)
_REPORT_FORWARDING = int(BundleFlags.REPORT_FORWARDING)
_REPORT_DELIVERY = int(BundleFlags.REPORT_DELIVERY)
_REPORT_DELETION = int(BundleFlags.REPORT_DELETION)
_STATUS_TIME = int(BundleFlags.STATUS_TIME_REQUESTED)
_LOCAL_CACHE_MAX = 4096
# ADUs whose fragment coverage is kept in memory; one pushed out is read again from the store.
_COVERAGE_MAX = 256

DATA_PRIORITY = 1
ADMIN_PRIORITY = 2  # custody signals and status reports overtake data in the queue
_SENT_AGAIN_MAX = 1 << 17  # retransmitted custody IDs: no reference for fast retransmission
_TIMER_SLACK = 1e-6  # s: a timer read at its own deadline fires despite float rounding
_FRAGMENT_SLACK = 16  # bytes the per-hop blocks of a fragment may outgrow those measured
_PAGE = 256  # rows per store query when walking a backlog
_KNOWN_BLOCKS = frozenset(
    {
        BlockType.PAYLOAD,
        BlockType.PREVIOUS_NODE,
        BlockType.BUNDLE_AGE,
        BlockType.HOP_COUNT,
        BlockType.BIB,
        BlockType.BCB,
    }
)

# Refusals after which the bundle is worth sending again when the custody timer runs out.
_RETRY_REASONS = frozenset(
    {
        CustodyReason.NO_INFORMATION,
        CustodyReason.DEPLETED_STORAGE,
        CustodyReason.NO_KNOWN_ROUTE,
        CustodyReason.NO_TIMELY_CONTACT,
    }
)
# The `custodian` of a bundle submitted without custody: no custodian ever has a node ID
# without a scheme, so it cannot collide with a received bundle's previous custodian.
NO_CUSTODY = "-"
_CREATION_META = "last_creation"
_CLOCK_META = "link_clock:"


class Refused(Exception):
    """A received bundle is not accepted; `reason` goes into the custody signal / report."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Agent:
    def __init__(
        self,
        node_id: EID | str,
        store: BundleStore,
        router: Router,
        config: AgentConfig | None = None,
    ) -> None:
        node = node_id if isinstance(node_id, EID) else EID.parse(node_id)
        if node.node_id != node or node.is_null:
            raise ValueError(f"{node} is not a node ID (ipn:N.0 or dtn://name/)")
        self.node_id = node
        self.store = store
        self.router = router
        self.config = config or AgentConfig()
        self._custody_type = self.config.codepoints.custody_block
        self._signal_type = self.config.codepoints.custody_signal
        self.counters: Counter[str] = Counter()
        self._staged: list[Action] = []
        self._staged_dispositions: list[tuple[str, int, bool, int]] = []
        self._signals = SignalAggregator(self.config.signal_delay, self.config.signal_max_ranges)
        self._clocks: dict[str, LinkClock] = {}
        self._busy_until: dict[str, float] = {}  # paced links: when the queued bytes are out
        self._queued: dict[str, int] = {}  # unpaced links: bytes the layer still holds
        self._last_size: dict[str, int] = {}  # of the bundle last sent to each neighbour
        self._stalled: set[str] = set()  # unpaced links held back until their queue drains
        self._backlog: dict[str, float] = {}  # neighbour -> when to send more to it
        self._retransmit_cache: dict[str, float | None] = {}
        self._sent_again: set[int] = set()  # custody IDs retransmitted, not yet released
        self._woken: set[str] = set()
        self._local: dict[EID, bool] = {}
        self._coverage: dict[str, Coverage] = {}  # ADU key -> what its stored fragments hold
        # Offered bundles that asked for a delivery report: (primary, payload length) by
        # delivery ID, so that `delivered` need not read the bundle back. Filled by every
        # offer, a restart's included.
        self._report_delivery: dict[int, tuple[PrimaryBlock, int]] = {}
        self._expiry = store.next_expiry()
        self._now = -math.inf
        ct, _, seq = str(store.get_meta(_CREATION_META, "0.-1")).partition(".")
        self._last_creation = (int(ct), int(seq))
        self._creation_dirty = False
        # Bundles stored as deliverable before this agent existed were offered to an agent that
        # may have died before the application took them: offer them again (IDs below this).
        self._redeliver_below = store.next_id
        self._redeliver_after: int | None = 0 if store.deliverable(0, 1) else None
        # What a convergence layer held for its neighbour went with the process that ran it.
        store.requeue_handed()

    # === inputs: applications ==================================================================

    def submit(
        self,
        payload: bytes,
        destination: EID | str,
        now: float,
        *,
        source: EID | str | None = None,
        lifetime: float | None = None,
        priority: int = DATA_PRIORITY,
        flags: int = 0,
        hop_limit: int | None = None,
        report_to: EID | str | None = None,
        custody: bool = True,
    ) -> BundleId:
        """Make a bundle of `payload` and accept it; its ID. Durable once `next_actions()` has
        returned: only then tell the application it was accepted. StoreFull when full.
        `custody=False`: forward it without custody transfer (as `submit_bundle`)."""
        self._now = now
        creation_time, sequence = self._next_creation(now)
        lifetime_ms = round(1000 * (self.config.default_lifetime if lifetime is None else lifetime))
        bundle = Bundle.create(
            self.node_id if source is None else source,
            destination,
            payload,
            creation_time=creation_time,
            sequence=sequence,
            lifetime=lifetime_ms,
            report_to=report_to,
            flags=flags,
            crc_type=self.config.crc_type,
            hop_limit=hop_limit,
        )
        return self.submit_bundle(bundle, now, priority=priority, custody=custody)

    def submit_bundle(
        self, bundle: Bundle, now: float, *, priority: int = DATA_PRIORITY, custody: bool = True
    ) -> BundleId:
        """Accept a bundle made on this node (e.g. by the payload pipeline), as `submit`.
        Its source must be an endpoint of this node; an ID already known is ignored.
        `custody=False`: forward it without custody transfer, whatever the link offers."""
        self._now = now
        if bundle.primary.source.node_id != self.node_id:
            raise ValueError(f"source {bundle.primary.source} is not an endpoint of {self.node_id}")
        self._accept(
            bundle,
            bundle.encode(),
            now,
            custody=None,
            priority=priority,
            custodian=None if custody else NO_CUSTODY,
        )
        self.counters["submitted"] += 1
        self._pump_woken(now)
        return bundle.id

    def next_creation(self, now: float) -> tuple[int, int]:
        """A (creation time, sequence) pair for a bundle made outside the agent (the payload
        pipeline's), unique on this node across restarts."""
        return self._next_creation(now)

    def delivered(self, delivery_id: int, now: float, *, refused: bool = False) -> bool:
        """The application has taken the payload of a Deliver action: forget the bundle (its
        ID stays known until it expires, so a late duplicate is not delivered again).
        `refused`: the payload failed a check on its way (security, policy) and is discarded,
        processed no further (RFC 9172 5.1.1): neither counted nor reported as delivered."""
        if refused:
            self._now = now
            self._report_delivery.pop(delivery_id, None)
            return self.store.finish(delivery_id, State.DELIVERABLE)
        return bool(self.delivered_many([delivery_id], now))

    def delivered_many(self, delivery_ids: list[int], now: float) -> list[int]:
        """`delivered` for several payloads the application has taken (one statement for
        all); the IDs that were still waiting for it."""
        self._now = now
        reports = [self._report_delivery.pop(i, None) for i in delivery_ids]
        done = self.store.finish_many(delivery_ids, State.DELIVERABLE)
        self.counters["delivered"] += len(done)
        finished = set(done)
        reported = False
        for delivery_id, report in zip(delivery_ids, reports, strict=True):
            if report is not None and delivery_id in finished:
                self._report_on(*report, DELIVERED, ReasonCode.NO_INFORMATION, now)
                reported = True
        if reported:
            self._pump_woken(now)
        return done

    # === inputs: the network ===================================================================

    def receive(self, data: bytes, neighbour: str | None, now: float) -> None:
        """One bundle as received from a neighbour. Never raises for bad input: it is counted,
        reported as an Event, and, when it asked for custody, refused."""
        self._now = now
        self._receive_one(data, neighbour, now)
        self._pump_woken(now)

    def receive_many(self, datagrams: list[bytes], neighbour: str | None, now: float) -> None:
        """Several bundles received in one event-loop turn (they share one commit)."""
        self._now = now
        for data in datagrams:
            self._receive_one(data, neighbour, now)
        self._pump_woken(now)

    def contact_up(self, neighbour: str, now: float) -> None:
        self._now = now
        self._clock(neighbour).start(now)
        self._reroute(now)
        self._woken.add(neighbour)
        self._pump_woken(now)

    def contact_down(self, neighbour: str, now: float) -> None:
        """The link is gone: stop sending, and stop its custody timers until it is back."""
        self._now = now
        clock = self._clock(neighbour)
        clock.stop(now)
        self.store.set_meta(_CLOCK_META + neighbour, clock.elapsed)
        self._backlog.pop(neighbour, None)
        self._busy_until.pop(neighbour, None)
        self._queued.pop(neighbour, None)
        self._stalled.discard(neighbour)

    def link_backlog(self, neighbour: str, queued_bytes: int, now: float) -> None:
        """What the convergence layer still holds for a neighbour, as it reports it: the
        pacing then counts from that, not from the rate alone, so a layer that sends slower
        than its rate (a busy CPU) is not handed more than `pacing_window` of it. Without this
        its queue grew past a gigabyte and the custody timers ran out while bundles still sat
        in it, each sent again into the same queue."""
        link = self.router.link(neighbour, now)
        if link.rate_bps:
            busy = self._busy_until[neighbour] = now + 8 * queued_bytes / link.rate_bps
            if neighbour in self._backlog:  # bundles wait: pump again once there is room
                self._backlog[neighbour] = busy - self.config.pacing_window
            return
        # An unpaced layer (TCP) takes what it is given as fast as it can: hold back once it
        # holds `unpaced_queue` bytes, and go on when it has sent half of that (not at each
        # acknowledgement: a pump, its query and its commit then carry many bundles, not one).
        self._queued[neighbour] = queued_bytes
        if neighbour in self._stalled and queued_bytes <= self.config.unpaced_queue // 2:
            self._stalled.discard(neighbour)
            self._woken.add(neighbour)
            self._pump_woken(now)

    def handed_over(self, neighbour: str, store_ids: list[int], now: float) -> None:
        """The convergence layer to `neighbour` says the neighbour has these bundles (Transmit
        store ids): one sent without custody is done; one under custody waits for its signal."""
        self._now = now
        if self.router.link(neighbour, now).custody:
            return
        self.store.finish_many(store_ids, State.IN_FLIGHT)
        self._retransmit_cache.pop(neighbour, None)

    def not_handed_over(self, neighbour: str, store_ids: list[int], now: float) -> None:
        """The convergence layer lost these bundles (session ended before the neighbour
        acknowledged them, or it refused them): queue them again now, not at their timer."""
        self._now = now
        requeued = self.store.requeue(store_ids)
        self.counters["retransmissions"] += len(requeued)
        self._remember_sent_again(requeued)
        self._retransmit_cache.pop(neighbour, None)
        self._woken.add(neighbour)
        self._pump_woken(now)

    def reroute(self, now: float) -> None:
        """Give queued bundles that had no route another chance (call after a route change)."""
        self._now = now
        self._reroute(now)
        self._pump_woken(now)

    # === inputs: time ==========================================================================

    def timer(self, now: float) -> None:
        self._now = now
        self._purge(now)
        self._redeliver()
        for custodian, signal in self._signals.take_due(now):
            self.counters["signals_sent"] += 1
            self._originate(EID.parse(custodian), signal.encode(self._signal_type), now)
        for neighbour, clock in self._clocks.items():
            if not clock.running:
                continue
            due = self._next_retransmit(neighbour)
            if due is not None and due <= clock.read(now) + _TIMER_SLACK:
                requeued = self.store.requeue_overdue(neighbour, clock.read(now) + _TIMER_SLACK)
                self.counters["retransmissions"] += len(requeued)
                self._remember_sent_again(requeued)
                self._retransmit_cache.pop(neighbour, None)
                self._woken.add(neighbour)
            if self._backlog.get(neighbour, math.inf) <= now:
                self._woken.add(neighbour)
        self._pump_woken(now)

    # === outputs ===============================================================================

    def next_actions(self) -> list[Action]:
        """Commit the store, then hand out every action staged since the last call.

        A StoreError here means the group was lost: drop this agent and build a new one from
        the store (what was staged is gone with it, and nobody was told)."""
        if self.store.in_transaction:
            self._save_small_state()
        self.store.commit()
        for custodian, custody_id, accepted, reason in self._staged_dispositions:
            self._signals.add(custodian, custody_id, accepted, reason, self._now)
        self._staged_dispositions.clear()
        actions, self._staged = self._staged, []
        return actions

    def next_deadline(self) -> float | None:
        """When `timer()` must next be called (mission time); None when nothing is timed.
        A deadline at or before now means: call it at once."""
        deadlines = [t for t in (self._expiry, self._signals.due) if t is not None]
        deadlines.extend(self._backlog.values())
        for neighbour, clock in self._clocks.items():
            if clock.running:
                due = self._next_retransmit(neighbour)
                if due is not None:
                    deadlines.append(clock.when(due))
        if self._redeliver_after is not None:
            deadlines.append(self._now)
        return min(deadlines, default=None)

    # === reception =============================================================================

    def _receive_one(self, data: bytes, neighbour: str | None, now: float) -> None:
        self.counters["received"] += 1
        if len(data) > self.config.max_bundle_size:
            self._malformed(
                neighbour,
                f"{len(data)} bytes is above max_bundle_size {self.config.max_bundle_size}",
            )
            return
        try:
            bundle = Bundle.decode(data)
            own, custody = self._own_custody(bundle)
        except BundleError as exc:
            self._malformed(neighbour, str(exc))
            self._delete_unintelligible(data, now)
            return
        # The bundle left the previous node one light time ago: its age grew meanwhile.
        since = now - (self.router.link(neighbour, now).owlt if neighbour is not None else 0.0)
        try:
            self._check_received(bundle, since, now)
            if self._discard_unprocessable_blocks(bundle, own, now):
                data = bundle.encode()
            self._accept(bundle, data, now, custody=custody, priority=DATA_PRIORITY, since=since)
        except Refused as refusal:
            self._drop(bundle, custody, refusal.reason, str(refusal), now)
        except StoreFull as exc:
            self._drop(bundle, custody, CustodyReason.DEPLETED_STORAGE, str(exc), now)

    def _malformed(self, neighbour: str | None, detail: str) -> None:
        self.counters["malformed"] += 1
        self._staged.append(Event("malformed", None, f"from {neighbour}: {detail}"))

    def _delete_unintelligible(self, data: bytes, now: float) -> None:
        """RFC 9171 5.6 steps 2 and 3 for input that did not decode: the reception report, then
        deletion for "block unintelligible" by 5.10, each if the bundle asks for it. Both need a
        report-to EID to trust, so only when the primary block decoded and its CRC checked; and
        a fragment's report needs its payload length, which a broken bundle may not tell."""
        primary = trusted_primary(data)
        if primary is None or primary.is_fragment:
            return
        if primary.flags & _REPORT_RECEPTION:
            self._report_on(primary, 0, RECEIVED, ReasonCode.NO_INFORMATION, now)
        if primary.flags & _REPORT_DELETION:
            self._report_on(primary, 0, DELETED, ReasonCode.BLOCK_UNINTELLIGIBLE, now)

    def _check_received(self, bundle: Bundle, since: float, now: float) -> None:
        """RFC 9171 5.6: the reception report (step 2, before anything may delete the bundle),
        then lifetime (5.5) and hop limit (4.4.3); Refused when the bundle must go."""
        if bundle.primary.flags & _REPORT_RECEPTION:
            self._report(bundle, RECEIVED, ReasonCode.NO_INFORMATION, now)
        _, expires = _times(bundle, since)
        if expires <= now:
            raise Refused(CustodyReason.LIFETIME_EXPIRED, "lifetime expired on arrival")
        block = bundle.block_of_type(BlockType.HOP_COUNT)
        if block is not None and decode_hop_count(block.data).exceeded:
            raise Refused(CustodyReason.HOP_LIMIT_EXCEEDED, "hop limit exceeded")

    def _own_custody(self, bundle: Bundle) -> tuple[CanonicalBlock | None, CustodyBlock | None]:
        """Our custody block in the bundle and what it says, if it has one; a block of another
        stack under the same number is not it (CustodyBlock.recognise)."""
        previous = bundle.block_of_type(BlockType.PREVIOUS_NODE)
        if previous is not None:
            for block in bundle.blocks:
                if block.block_type == self._custody_type:
                    custody = CustodyBlock.recognise(block, previous.data)
                    if custody is not None:
                        return block, custody
        return None, None

    def _processed_here(self, block: CanonicalBlock, own_custody: CanonicalBlock | None) -> bool:
        if block.block_type in _KNOWN_BLOCKS or block is own_custody:
            return True
        recognise = self.config.extra_blocks.get(block.block_type)
        return recognise is not None and recognise(block.data)

    def _discard_unprocessable_blocks(
        self, bundle: Bundle, own_custody: CanonicalBlock | None, now: float
    ) -> bool:
        """Apply the block processing flags of blocks this node cannot process (RFC 9171
        4.2.4), other stacks' blocks among them; whether any block was removed."""
        removed = False
        unprocessed = [b for b in bundle.blocks if not self._processed_here(b, own_custody)]
        if unprocessed:
            self.counters["foreign_blocks"] += len(unprocessed)
        for block in unprocessed:
            if block.flags & BlockFlags.REPORT_IF_UNPROCESSABLE:
                self._report(bundle, RECEIVED, ReasonCode.BLOCK_UNSUPPORTED, now)
            if block.flags & BlockFlags.DELETE_BUNDLE_IF_UNPROCESSABLE:
                raise Refused(
                    CustodyReason.BLOCK_UNSUPPORTED,
                    f"block type {block.block_type} is unsupported and asks for "
                    "the bundle's deletion",
                )
            if block.flags & BlockFlags.DISCARD_IF_UNPROCESSABLE:
                bundle.blocks.remove(block)
                removed = True
        return removed

    def _drop(
        self, bundle: Bundle, custody: CustodyBlock | None, reason: int, detail: str, now: float
    ) -> None:
        self.counters["refused"] += 1
        self._staged.append(Event("refused", bundle.id, f"{_reason_name(reason)}: {detail}"))
        if custody is not None:
            self._dispose(custody, accepted=False, reason=reason)
        if bundle.primary.flags & _REPORT_DELETION:
            self._report(bundle, DELETED, reason, now)

    # === acceptance ============================================================================

    def _accept(
        self,
        bundle: Bundle,
        data: bytes,
        now: float,
        *,
        custody: CustodyBlock | None,
        priority: int,
        enforce_quota: bool = True,
        since: float | None = None,
        custodian: str | None = None,
    ) -> None:
        """Take a bundle into the store (or consume it, if it is an administrative record for
        this node). Raises StoreFull or Refused; a duplicate is not an error. `since`: when the
        bundle left the previous node (default: now).

        New bundles are the common case: the store's unique key finds duplicates during the
        insert, and only then is the stored copy looked at."""
        primary = bundle.primary
        bundle_id = bundle.id
        if primary.flags & _ADMIN and primary.destination == self.node_id:
            self._consume_admin_record(bundle, now)
            if custody is not None:
                self._dispose(custody, accepted=True, reason=CustodyReason.NO_INFORMATION)
            return
        key = str(bundle_id)
        since = now if since is None else since
        created, expires = _times(bundle, since)
        record = NewBundle(
            key,
            data,
            State.PENDING,
            created,
            expires,
            since,
            priority=priority,
            custodian=custodian if custody is None else str(custody.custodian),
        )
        local = self._is_local(primary.destination)
        if local and primary.flags & _FRAGMENT:
            record.state = State.FRAGMENT
            record.adu = adu_key(bundle)
            record.frag_offset = primary.fragment_offset
            record.frag_length = len(bundle.payload)
            if self._duplicate(record.adu, bundle_id, custody):  # already reassembled
                return
        elif local:
            record.state = State.DELIVERABLE
        else:
            record.next_hop = self.router.next_hop(primary.destination, now)
            if record.next_hop is None and custody is not None:
                if self._duplicate(key, bundle_id, custody):
                    return
                raise Refused(CustodyReason.NO_KNOWN_ROUTE, f"no route to {primary.destination}")
        try:
            bundle_row = self.store.add_many([record], enforce_quota=enforce_quota)[0]
        except (DuplicateBundle, StoreFull):
            if self._duplicate(key, bundle_id, custody):  # held already: no room needed
                return
            raise
        self.counters["accepted"] += 1
        self._expiry = expires if self._expiry is None else min(self._expiry, expires)
        if custody is not None:
            self._dispose(custody, accepted=True, reason=CustodyReason.NO_INFORMATION)
        if record.state == State.DELIVERABLE:
            self._offer(bundle_row, bundle, bundle_id)
        elif record.state == State.FRAGMENT:
            self._try_reassembly(bundle, now)
        elif record.next_hop is not None:
            self._woken.add(record.next_hop)
        else:
            self._staged.append(
                Event("unrouted", bundle_id, f"no route to {primary.destination} yet")
            )

    def _duplicate(self, key: str, bundle_id: BundleId, custody: CustodyBlock | None) -> bool:
        """If `key` is held or remembered: count the duplicate, answer its custody request
        (accepted again from the same custodian, redundant from another) and say so."""
        known = self.store.known(key)
        if known is None:
            return False
        self.counters["duplicates"] += 1
        self._staged.append(Event("duplicate", bundle_id))
        if custody is not None:
            same = known[1] == str(custody.custodian)
            reason = CustodyReason.NO_INFORMATION if same else CustodyReason.REDUNDANT_RECEPTION
            self._dispose(custody, accepted=same, reason=reason)
        return True

    def _dispose(self, custody: CustodyBlock, *, accepted: bool, reason: int) -> None:
        """Queue a custody disposition; it joins the aggregator once the store has committed."""
        self._staged_dispositions.append(
            (str(custody.custodian), custody.custody_id, accepted, int(reason))
        )

    def _offer(
        self,
        delivery_id: int,
        bundle: Bundle,
        bundle_id: BundleId | None = None,
        payload_file: Path | None = None,
    ) -> None:
        primary = bundle.primary
        if primary.flags & _REPORT_DELIVERY:
            self._report_delivery[delivery_id] = (primary, len(bundle.payload))
        self._staged.append(
            Deliver(
                delivery_id,
                str(primary.destination),
                bundle.id if bundle_id is None else bundle_id,
                bundle.payload,
                bool(primary.flags & _ADMIN),
                bundle,
                payload_file,
            )
        )

    def _is_local(self, destination: EID) -> bool:
        """Whether an endpoint is on this node (cached: it is asked for every bundle)."""
        local = self._local.get(destination)
        if local is None:
            if len(self._local) >= _LOCAL_CACHE_MAX:
                self._local.clear()
            local = self._local[destination] = destination.node_id == self.node_id
        return local

    def _try_reassembly(self, piece: Bundle, now: float) -> None:
        adu = adu_key(piece)
        total = piece.primary.total_adu_length
        coverage = self._coverage.pop(adu, None)  # popped and put back: the newest last
        if coverage is None:
            spans = self.store.fragment_spans(adu)  # this piece's row among them
            coverage = Coverage((offset, length) for _, offset, length in spans)
        else:
            coverage.add(piece.primary.fragment_offset, len(piece.payload))
        if not coverage.covers(total):
            self._coverage[adu] = coverage
            if len(self._coverage) > _COVERAGE_MAX:
                del self._coverage[next(iter(self._coverage))]
            return
        # Checked against the store: expiry may have removed fragments the cache still counts.
        spans = self.store.fragment_spans(adu)
        held = Coverage((offset, length) for _, offset, length in spans)
        if not held.covers(total):
            self._coverage[adu] = held
            return
        spans.sort(key=lambda span: span[1])  # by offset: the first fragment's row comes first
        first = self.store.get(spans[0][0])
        file = None
        if piece.primary.total_adu_length > self.config.large_adu:
            # Too large to hold: into a file, one fragment in memory at a time.
            file = self.store.spool_path()
            try:
                with open(file, "wb") as out:
                    pieces = (Bundle.decode(self.store.get(row_id).data) for row_id, _, _ in spans)
                    whole = reassemble_into(pieces, out)
            except OSError as exc:  # the fragments stay; the next one to arrive tries again
                file.unlink(missing_ok=True)
                self.counters["reassembly_failed"] += 1
                self._staged.append(Event("reassembly_failed", piece.id, str(exc)))
                return
        else:
            rows = self.store.load(row_id for row_id, _, _ in spans)
            whole = reassemble([Bundle.decode(row.data) for row in rows])
        for row_id, _, _ in spans:
            self.store.finish(row_id, State.FRAGMENT)
        record = NewBundle(
            adu,
            whole.encode(),
            State.DELIVERABLE,
            first.created,
            first.expires,
            first.received,
            file=file,
        )
        whole_row = self.store.add_many([record], enforce_quota=False)[0]
        self.counters["reassembled"] += 1
        self._offer(
            whole_row, whole, payload_file=None if file is None else self.store.get(whole_row).file
        )

    def _consume_admin_record(self, bundle: Bundle, now: float) -> None:
        try:
            kind = record_type(bundle.payload)
            if kind == self._signal_type:
                signal = CustodySignal.decode(bundle.payload, self._signal_type)
                self._on_custody_signal(signal, bundle.id)
            elif kind == STATUS_REPORT:
                report = decode_status_report(bundle.payload)
                subject = BundleId(
                    str(report.source),
                    report.creation_time,
                    report.sequence,
                    report.fragment_offset,
                    report.fragment_length,
                )
                self._staged.append(Event("status_report", subject, _describe_report(report)))
            else:
                self.counters["admin_unknown"] += 1
                self._staged.append(Event("admin_unknown", bundle.id, f"record type {kind}"))
        except BundleError as exc:
            self._malformed(str(bundle.primary.source), f"administrative record: {exc}")

    def _on_custody_signal(self, signal: CustodySignal, signal_id: BundleId) -> None:
        self.counters["signals_received"] += 1
        if signal.accepted or signal.reason not in _RETRY_REASONS:
            rows = [row for first, last in signal.ranges for row in self.store.release(first, last)]
            released = len(rows)
            sent_once = [row for row in rows if row[0] not in self._sent_again]
            self._sent_again.difference_update(row[0] for row in rows)
            if signal.accepted:
                self._resend_skipped(sent_once)
            self.counters["custody_released"] += released
            self._retransmit_cache.clear()
            if released:
                self._staged.append(
                    Event("custody_released", signal_id, f"{released} by {signal_id.source}")
                )
            if not signal.accepted:
                self._staged.append(
                    Event(
                        "custody_refused",
                        signal_id,
                        _reason_name(signal.reason) + f": {signal.id_count} bundles given up",
                    )
                )
        else:
            self.counters["custody_refused"] += signal.id_count
            self._staged.append(
                Event(
                    "custody_refused",
                    signal_id,
                    _reason_name(signal.reason)
                    + f": {signal.id_count} bundles to retry on the timer",
                )
            )

    # === transmission ==========================================================================

    def _pump_woken(self, now: float) -> None:
        while self._woken:
            self._pump(self._woken.pop(), now)

    def _pump(self, neighbour: str, now: float) -> None:
        """Send what is due for a neighbour whose contact is up: by priority then age, as much
        as the link can take within the pacing window, or one batch on an unpaced link."""
        clock = self._clocks.get(neighbour)
        if clock is None or not clock.running:
            return
        link = self.router.link(neighbour, now)
        budget = self.config.transmit_batch
        horizon = now + self.config.pacing_window
        while budget > 0:
            if self._link_full(link, now, horizon):
                return  # before the query: a busy link would take none of its rows
            rows = self.store.due(neighbour, self._rows_wanted(link, now, horizon, budget))
            if not rows:
                self._backlog.pop(neighbour, None)
                return
            for row in rows:
                if self._link_full(link, now, horizon):
                    return
                self._transmit(row, link, clock, now)
                budget -= 1
        self._backlog[neighbour] = now

    def _rows_wanted(self, link: Link, now: float, horizon: float, budget: int) -> int:
        """How many queued rows to read: on a paced link, about as many as its room within
        the horizon holds (counting 1 KiB a bundle), so a link that has room for one more
        bundle does not read sixteen."""
        if not link.rate_bps:
            # As many as the layer has room for at the size last sent: rows of large bundles
            # read a hundred at a time cost more in fresh memory than in copying them.
            room = self.config.unpaced_queue - self._queued.get(link.neighbour, 0)
            size = self._last_size.get(link.neighbour, self.config.unpaced_queue)  # 1 row first
            return max(1, min(budget, _PAGE, room // size))
        room = (horizon - self._busy_until.get(link.neighbour, now)) * link.rate_bps / 8
        return max(1, min(16, int(room) >> 10))

    def _link_full(self, link: Link, now: float, horizon: float) -> bool:
        """Whether what was handed to the link already lasts past `horizon` (an unpaced link:
        fills `unpaced_queue`); if so, the neighbour's backlog is due again when it no longer
        does (unpaced: when the layer reports room)."""
        neighbour = link.neighbour
        if not link.rate_bps:  # only a layer that reports its backlog is held back
            if self._queued.get(neighbour, 0) < self.config.unpaced_queue:
                return False
            # Woken by `link_backlog` once the layer has room, not by the timer: a backlog
            # left due now had the node call `timer()` over and over while the layer was full
            # (11,000 times for 4,000 bundles of 10 KiB: half the sending node's CPU).
            self._stalled.add(neighbour)
            self._backlog.pop(neighbour, None)
            return True
        busy = self._busy_until.get(neighbour, now)
        if busy > horizon:
            self._backlog[neighbour] = busy - self.config.pacing_window
            return True
        return False

    def _transmit(self, row: StoredBundle, link: Link, clock: LinkClock, now: float) -> None:
        try:
            bundle = Bundle.decode(row.data)
        except BundleError as exc:  # only a damaged disk gets here
            self.store.finish(row.id, State.PENDING)
            self._malformed("store", f"stored bundle {row.key}: {exc}")
            return
        custody = link.custody and not bundle.is_admin_record and row.custodian != NO_CUSTODY
        data = self._for_next_hop(bundle, row, now, row.id if custody else None)
        limit = _size_limit(link, bundle)
        if limit is not None and len(data) > limit:
            self._fragment_queued(row, bundle, link, limit, len(data), now)
            return
        if link.acknowledged and not custody:
            self.store.mark_handed(row.id)  # until the layer says the neighbour has it
        elif custody:
            retransmit_at = clock.read(now) + self._base_timeout(link)
            self.store.mark_in_flight(row.id, retransmit_at)
            cache = self._retransmit_cache
            if link.neighbour in cache:  # else unknown: read from the store when needed
                current = cache[link.neighbour]
                cache[link.neighbour] = (
                    retransmit_at if current is None else min(current, retransmit_at)
                )
        else:
            self.store.finish(row.id, State.PENDING)
        self.counters["transmitted"] += 1
        self._staged.append(Transmit(link.neighbour, data, bundle.id, row.id))
        self._last_size[link.neighbour] = len(data)
        if not link.rate_bps:
            if link.neighbour in self._queued:
                self._queued[link.neighbour] += len(data)
        else:
            busy = max(self._busy_until.get(link.neighbour, now), now)
            self._busy_until[link.neighbour] = busy + 8 * len(data) / link.rate_bps
        if row.retransmit_at is None and bundle.primary.flags & _REPORT_FORWARDING:
            self._report(bundle, FORWARDED, ReasonCode.NO_INFORMATION, now)

    def _for_next_hop(
        self, bundle: Bundle, row: StoredBundle, now: float, custody_id: int | None
    ) -> bytes:
        """The bytes to send: previous node = this node, hop count + 1, bundle age grown by the
        time spent here, and this node's custody block (or none)."""
        crc = self.config.crc_type
        own, _ = self._own_custody(bundle)  # before the previous node block names us
        if own is not None:
            bundle.blocks.remove(own)
        _set_block(bundle, BlockType.PREVIOUS_NODE, self.node_id.to_cbor(), crc)
        hop = bundle.block_of_type(BlockType.HOP_COUNT)
        if hop is not None:
            count = decode_hop_count(hop.data)
            hop.data = HopCount(count.limit, count.count + 1).encode()
        age = bundle.block_of_type(BlockType.BUNDLE_AGE)
        if age is not None:
            grown = decode_bundle_age(age.data) + max(0, round(1000 * (now - row.received)))
            age.data = encode_bundle_age(grown)
        if custody_id is not None:  # a new block: a foreign one of the same number stays as is
            data = CustodyBlock(custody_id, self.node_id).encode()
            # No CRC: ION 4.1.3 fails the CRC check of every unknown block flagged "discard if
            # unprocessable" (libbpP.c) and drops the bundle; the link's own checks cover it.
            block = CanonicalBlock(
                self._custody_type, bundle.next_block_number(), data, CUSTODY_BLOCK_FLAGS,
                CRCType.NONE,
            )
            bundle.insert_block(block)
        return bundle.encode()

    def _fragment_queued(
        self, row: StoredBundle, bundle: Bundle, link: Link, limit: int, sent_size: int,
        now: float,
    ) -> None:
        """Replace a queued bundle above its link's `limit` by fragments that fit (RFC 9171
        5.8: proactive fragmentation). The fragments are queued in its place. `sent_size` is
        what the whole bundle would take with this hop's blocks; each fragment gets those too."""
        stored = Bundle.decode(row.data)
        own, _ = self._own_custody(stored)
        stored.blocks = [
            b for b in stored.blocks if b.block_type != BlockType.PREVIOUS_NODE and b is not own
        ]
        hop_overhead = sent_size - len(stored.encode())
        try:
            pieces = fragment(stored, limit - hop_overhead - _FRAGMENT_SLACK)
        except FragmentError as exc:
            self.store.finish(row.id, State.PENDING)
            self._drop(
                stored,
                None,
                ReasonCode.NO_KNOWN_ROUTE,
                f"{exc} to fit {link.neighbour}'s {limit} bytes",
                now,
            )
            return
        self.store.finish(row.id, State.PENDING)
        self.store.add_many(
            [
                NewBundle(
                    str(piece.id),
                    piece.encode(),
                    State.PENDING,
                    row.created,
                    row.expires,
                    row.received,
                    next_hop=row.next_hop,
                    priority=row.priority,
                    custodian=row.custodian,
                )
                for piece in pieces
            ],
            enforce_quota=False,
        )
        self.counters["fragmented"] += 1
        self._staged.append(
            Event("fragmented", bundle.id, f"{len(pieces)} fragments for {link.neighbour}")
        )

    def _reroute(self, now: float) -> None:
        after = 0
        while rows := self.store.unrouted(after, _PAGE):
            for row in rows:
                after = row.id
                next_hop = self.router.next_hop(Bundle.decode(row.data).primary.destination, now)
                if next_hop is not None:
                    self.store.set_next_hop(row.id, next_hop)
                    self._woken.add(next_hop)

    # === time ==================================================================================

    def _purge(self, now: float) -> None:
        if self._expiry is None or self._expiry > now:
            return
        for row in self.store.purge_expired(now, self.config.purge_batch):
            self.counters["expired"] += 1
            if row.state == State.IN_FLIGHT:
                self._retransmit_cache.pop(row.next_hop, None)
            self._report_delivery.pop(row.id, None)
            bundle = Bundle.decode(row.data)
            self._staged.append(Event("expired", bundle.id, f"in state {row.state.name}"))
            if bundle.primary.flags & _REPORT_DELETION:
                self._report(bundle, DELETED, ReasonCode.LIFETIME_EXPIRED, now)
        self._expiry = self.store.next_expiry()

    def _redeliver(self) -> None:
        if self._redeliver_after is None:
            return
        rows = [
            row
            for row in self.store.deliverable(self._redeliver_after, _PAGE)
            if row.id < self._redeliver_below
        ]
        for row in rows:
            self._offer(row.id, Bundle.decode(row.data), payload_file=row.file)
        self._redeliver_after = rows[-1].id if len(rows) == _PAGE else None

    def _next_retransmit(self, neighbour: str) -> float | None:
        if neighbour not in self._retransmit_cache:
            self._retransmit_cache[neighbour] = self.store.next_retransmit(neighbour)
        return self._retransmit_cache[neighbour]

    def _base_timeout(self, link: Link) -> float:
        return 2 * link.owlt + self.config.custody_margin

    def _resend_skipped(self, released: list[tuple[int, str, float]]) -> None:
        """Fast retransmission: a signal accepting bundles sent once at some time leaves out
        those sent well before them only if they were lost (the receiver signals what it took
        in order of arrival), so those go again now rather than when their timer runs out.
        `released` is (custody ID, next hop, retransmit_at = sent + base timeout)."""
        newest: dict[str, float] = {}
        for _, neighbour, retransmit_at in released:
            newest[neighbour] = max(retransmit_at, newest.get(neighbour, -math.inf))
        for neighbour, retransmit_at in newest.items():
            if neighbour not in self._clocks:
                continue
            base = self._base_timeout(self.router.link(neighbour, self._now))
            skipped = self.store.requeue_overdue(neighbour, retransmit_at - _reorder_guard(base))
            if skipped:
                self.counters["retransmissions"] += len(skipped)
                self.counters["fast_retransmissions"] += len(skipped)
                self._remember_sent_again(skipped)
                self._retransmit_cache.pop(neighbour, None)
                self._woken.add(neighbour)

    def _remember_sent_again(self, custody_ids: list[int]) -> None:
        """Bundles sent twice are no reference for _resend_skipped: the signal that released
        one may answer its first copy, sent long before the others it released."""
        self._sent_again.update(custody_ids)
        while len(self._sent_again) > _SENT_AGAIN_MAX:
            self._sent_again.pop()

    def _clock(self, neighbour: str) -> LinkClock:
        clock = self._clocks.get(neighbour)
        if clock is None:
            elapsed = float(self.store.get_meta(_CLOCK_META + neighbour, 0.0))
            clock = self._clocks[neighbour] = LinkClock(elapsed)
        return clock

    # === bundles made here =====================================================================

    def _next_creation(self, now: float) -> tuple[int, int]:
        """A creation timestamp unique on this node, across restarts (RFC 9171 4.2.7)."""
        creation_time = dtn_time_ms(now) if self.config.has_clock else 0
        last_time, last_sequence = self._last_creation
        creation_time = max(creation_time, last_time)
        sequence = last_sequence + 1 if creation_time == last_time else 0
        self._last_creation = (creation_time, sequence)
        self._creation_dirty = True
        return creation_time, sequence

    def _save_small_state(self) -> None:
        if self._creation_dirty:
            time, sequence = self._last_creation
            self.store.set_meta(_CREATION_META, f"{time}.{sequence}")
            self._creation_dirty = False
        for neighbour, clock in self._clocks.items():
            if clock.running:
                self.store.set_meta(_CLOCK_META + neighbour, clock.read(self._now))

    def _originate(self, destination: EID, record: bytes, now: float) -> None:
        """Send an administrative record from this node (a signal or a status report)."""
        creation_time, sequence = self._next_creation(now)
        bundle = Bundle.create(
            self.node_id,
            destination,
            record,
            creation_time=creation_time,
            sequence=sequence,
            lifetime=round(1000 * self.config.admin_lifetime),
            flags=BundleFlags.ADMIN_RECORD,
            crc_type=self.config.crc_type,
        )
        # Exempt from the quota: small, and a full node that could not signal would stall
        # every custodian upstream of it.
        self._accept(
            bundle, bundle.encode(), now, custody=None, priority=ADMIN_PRIORITY, enforce_quota=False
        )

    def _report(self, bundle: Bundle, assertion: int, reason: int, now: float) -> None:
        """A bundle status report to the bundle's report-to endpoint (RFC 9171 6.1.1)."""
        self._report_on(bundle.primary, len(bundle.payload), assertion, reason, now)

    def _report_on(
        self, primary: PrimaryBlock, payload_length: int, assertion: int, reason: int, now: float
    ) -> None:
        """A status report about the bundle with this primary block and payload length."""
        if not self.config.status_reports or primary.report_to.is_null or primary.flags & _ADMIN:
            return
        timed = bool(primary.flags & _STATUS_TIME)
        assertions: list[int | None] = [None] * 4
        assertions[assertion] = dtn_time_ms(now) if timed else 0
        fragment = primary.is_fragment
        report = StatusReport(
            primary.source,
            primary.creation_time,
            primary.sequence,
            reason,
            tuple(assertions),
            primary.fragment_offset if fragment else None,
            payload_length if fragment else None,
            with_times=timed,
        )
        self.counters["status_reports"] += 1
        self._originate(primary.report_to, report.encode(), now)


def _times(bundle: Bundle, since: float) -> tuple[float, float]:
    """(creation, expiry) in mission seconds. Without a creation time (no clock at the
    source), the bundle age block says how long before `since` (when the bundle left the
    previous node) it was created (RFC 9171 4.4.2)."""
    primary = bundle.primary
    if primary.creation_time:
        created = unix_from_dtn_ms(primary.creation_time)
    else:
        block = bundle.block_of_type(BlockType.BUNDLE_AGE)
        created = since - (decode_bundle_age(block.data) / 1000 if block is not None else 0.0)
    return created, created + primary.lifetime / 1000


def _set_block(bundle: Bundle, block_type: int, data: bytes, crc_type: int, flags: int = 0) -> None:
    block = bundle.block_of_type(block_type)
    if block is None:
        bundle.insert_block(
            CanonicalBlock(block_type, bundle.next_block_number(), data, flags, crc_type)
        )
    else:
        block.data = data


_ASSERTIONS = ("received", "forwarded", "delivered", "deleted")


def _describe_report(report: StatusReport) -> str:
    """`delivered` (or received, forwarded, deleted: reason), for the Event's detail."""
    said = [name for name, at in zip(_ASSERTIONS, report.assertions, strict=True) if at is not None]
    text = ",".join(said)
    if report.reason:
        text += f": {_reason_name(report.reason)}"
    return text


def _reason_name(reason: int) -> str:
    try:
        return CustodyReason(reason).name
    except ValueError:
        return f"reason {reason}"


def _size_limit(link: Link, bundle: Bundle) -> int | None:
    """The size above which `bundle` is fragmented before it goes on `link`: the link's hard
    limit, or its preferred size if the bundle may be fragmented."""
    hard, preferred = link.max_bundle_size, link.fragment_above
    if preferred is None or bundle.primary.flags & BundleFlags.MUST_NOT_FRAGMENT:
        return hard
    return preferred if hard is None else min(hard, preferred)


def _reorder_guard(base: float) -> float:
    """How much earlier than an accepted bundle one must have been sent for its absence from
    the same signal to mean it was lost: the receiver's signal_delay and processing."""
    return max(2.0, 0.1 * base)
