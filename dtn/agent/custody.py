"""Custody transfer wire formats: the custody transfer extension block and the compressed
custody signal (docs/custody.md has the exact format, the code points and the deviations).

Custody state of one bundle at one node (the store's `state` column; the agent makes each move):

    state        event                                         next state
    -----------  --------------------------------------------  -------------------------------
    (none)       accepted (submitted, or received + signalled)  PENDING
    PENDING      transmitted, custody requested of the link     IN_FLIGHT  (timer armed)
    PENDING      transmitted, link takes no custody / admin     DONE
    IN_FLIGHT    signal: accepted, or refused as redundant      DONE       (bytes dropped)
    IN_FLIGHT    signal: refused, lifetime expired              DONE
    IN_FLIGHT    signal: refused, any other reason              IN_FLIGHT  (timer still runs)
    IN_FLIGHT    timer ran out (link-up time only)              PENDING    (same custody ID)
    PENDING      late signal for an earlier transmission        DONE
    any live     lifetime ended                                 (row deleted)
    DONE         lifetime ended                                 (row deleted)

A node accepts custody idempotently: a duplicate of a bundle it holds or held is answered with
"accepted" again when it comes from the same custodian, "refused: redundant" from another; both
release the sender's copy.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import IntEnum

from dtn.bundle import EID, BlockFlags, BundleError, CanonicalBlock, ReasonCode, cbor
from dtn.bundle.eid import decode_eid
from dtn.codepoints import DEFAULT_CODEPOINTS

# The defaults; a node may configure others (dtn.codepoints).
CUSTODY_BLOCK_TYPE = DEFAULT_CODEPOINTS.custody_block
CUSTODY_SIGNAL_RECORD_TYPE = DEFAULT_CODEPOINTS.custody_signal
CUSTODY_BLOCK_FLAGS = int(BlockFlags.DISCARD_IF_UNPROCESSABLE)  # forwarded without, elsewhere
MAX_SIGNAL_RANGES = 4096  # bound on what a decoder accepts in one signal
_MAX_ID = (1 << 63) - 1  # custody IDs are SQLite rowids


class CustodyReason(IntEnum):
    """Why custody was refused: the RFC 9171 status report reason codes, plus one of ours."""

    NO_INFORMATION = ReasonCode.NO_INFORMATION  # with "accepted"
    LIFETIME_EXPIRED = ReasonCode.LIFETIME_EXPIRED
    DEPLETED_STORAGE = ReasonCode.DEPLETED_STORAGE
    DESTINATION_EID_UNINTELLIGIBLE = ReasonCode.DESTINATION_EID_UNINTELLIGIBLE
    NO_KNOWN_ROUTE = ReasonCode.NO_KNOWN_ROUTE
    NO_TIMELY_CONTACT = ReasonCode.NO_TIMELY_CONTACT
    BLOCK_UNINTELLIGIBLE = ReasonCode.BLOCK_UNINTELLIGIBLE
    HOP_LIMIT_EXCEEDED = ReasonCode.HOP_LIMIT_EXCEEDED
    BLOCK_UNSUPPORTED = ReasonCode.BLOCK_UNSUPPORTED
    REDUNDANT_RECEPTION = 192  # a copy is already held here (BPv6's custody reason 3)


@dataclass(frozen=True, slots=True)
class CustodyBlock:
    """Custody transfer extension block data: [custody ID, current custodian node ID]."""

    custody_id: int
    custodian: EID

    def encode(self) -> bytes:
        return b"\x82" + cbor.uint(self.custody_id) + self.custodian.to_cbor()

    @classmethod
    def decode(cls, data: bytes) -> CustodyBlock:
        try:
            count, pos = cbor.read_array(data, 0, "custody block")
            if count != 2:
                raise BundleError(f"custody block must be a 2-item array, found {count}")
            custody_id, pos = cbor.read_uint(data, pos, "custody ID")
            custodian, pos = decode_eid(data, pos, "custodian")
        except IndexError:
            raise BundleError("custody block is truncated") from None
        if pos != len(data):
            raise BundleError(f"custody block: {len(data) - pos} bytes after the array")
        if custody_id > _MAX_ID or custodian.is_null:
            raise BundleError(f"custody block names custody ID {custody_id} of {custodian}")
        return cls(custody_id, custodian)

    @classmethod
    def recognise(cls, block: CanonicalBlock, previous_node: bytes) -> CustodyBlock | None:
        """This block read as ours, or None when it is another stack's block under the same
        private number: ours has our flags, our [ID, custodian] shape, and names as custodian
        the node that sent it, encoded as its previous node block's data is (each custodian
        writes both)."""
        if block.flags != CUSTODY_BLOCK_FLAGS or not block.data.endswith(previous_node):
            return None
        try:
            return cls.decode(block.data)
        except BundleError:
            return None


@dataclass(frozen=True, slots=True)
class CustodySignal:
    """One disposition for sets of custody IDs assigned by the custodian the signal goes to.

    `ranges` are inclusive (first, last) pairs, sorted, neither overlapping nor adjacent."""

    accepted: bool
    reason: int
    ranges: tuple[tuple[int, int], ...]

    def encode(self, record_type: int = CUSTODY_SIGNAL_RECORD_TYPE) -> bytes:
        """[record type, [accepted, reason, [first, count, gap, count, ...]]]: each run is sent
        as its length and the gap before it, so neighbouring IDs cost a byte or two."""
        fills = []
        previous_last = None
        for first, last in self.ranges:
            fills.append(cbor.uint(first if previous_last is None else first - previous_last - 1))
            fills.append(cbor.uint(last - first + 1))
            previous_last = last
        return b"".join(
            [
                b"\x82",
                cbor.uint(record_type),
                b"\x83",
                b"\xf5" if self.accepted else b"\xf4",
                cbor.uint(self.reason),
                cbor.head(cbor.ARRAY, len(fills)),
                *fills,
            ]
        )

    @classmethod
    def decode(cls, payload: bytes, record_type: int = CUSTODY_SIGNAL_RECORD_TYPE
               ) -> CustodySignal:
        try:
            return _decode_signal(payload, record_type)
        except IndexError:
            raise BundleError("custody signal is truncated") from None

    @property
    def id_count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


def _decode_signal(payload: bytes, record_type: int) -> CustodySignal:
    count, pos = cbor.read_array(payload, 0, "administrative record")
    if count != 2:
        raise BundleError(f"administrative record must be a 2-item array, found {count}")
    code, pos = cbor.read_uint(payload, pos, "administrative record type")
    if code != record_type:
        raise BundleError(f"administrative record type {code} is not a custody signal")
    items, pos = cbor.read_array(payload, pos, "custody signal")
    if items != 3:
        raise BundleError(f"custody signal must have 3 items, found {items}")
    flag = payload[pos]
    if flag not in (0xF4, 0xF5):
        raise BundleError(f"custody signal disposition must be a boolean (byte {pos})")
    reason, pos = cbor.read_uint(payload, pos + 1, "custody signal reason")
    fill_count, pos = cbor.read_array(payload, pos, "custody ID fills")
    bound = 2 * MAX_SIGNAL_RANGES
    if fill_count == cbor.INDEFINITE or fill_count % 2 or not 0 < fill_count <= bound:
        raise BundleError(
            f"custody ID fills must be 2..{bound} items in (gap, count) pairs, found {fill_count}"
        )
    ranges = []
    last = -2
    for _ in range(fill_count // 2):
        gap, pos = cbor.read_uint(payload, pos, "custody ID gap")
        run, pos = cbor.read_uint(payload, pos, "custody ID run length")
        first = gap if not ranges else last + 1 + gap
        if run == 0 or (ranges and gap == 0) or first + run - 1 > _MAX_ID:
            raise BundleError(f"custody ID run at byte {pos} is empty, adjacent or out of range")
        last = first + run - 1
        ranges.append((first, last))
    if pos != len(payload):
        raise BundleError(f"{len(payload) - pos} bytes after the custody signal")
    return CustodySignal(flag == 0xF5, reason, tuple(ranges))


class RangeSet:
    """Custody IDs as sorted, merged inclusive ranges: 10,000 consecutive IDs are one range."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []

    def add(self, value: int) -> None:
        firsts, lasts = self._firsts, self._lasts
        i = bisect.bisect_right(firsts, value)
        if i and lasts[i - 1] >= value:
            return  # already in
        joins_left = i > 0 and lasts[i - 1] == value - 1
        joins_right = i < len(firsts) and firsts[i] == value + 1
        if joins_left and joins_right:
            lasts[i - 1] = lasts[i]
            del firsts[i], lasts[i]
        elif joins_left:
            lasts[i - 1] = value
        elif joins_right:
            firsts[i] = value
        else:
            firsts.insert(i, value)
            lasts.insert(i, value)

    def __len__(self) -> int:
        return len(self._firsts)

    def take(self, limit: int) -> tuple[tuple[int, int], ...]:
        """Remove and return up to `limit` ranges, lowest first."""
        taken = tuple(zip(self._firsts[:limit], self._lasts[:limit], strict=True))
        del self._firsts[:limit], self._lasts[:limit]
        return taken


class SignalAggregator:
    """Dispositions waiting to be signalled, per (custodian, accepted, reason).

    A signal goes out `delay` seconds after the first disposition it carries, or at once when
    it has gathered `max_ranges` ranges: a burst of accepted bundles costs a handful of signals.
    """

    def __init__(self, delay: float, max_ranges: int) -> None:
        self.delay = delay
        self.max_ranges = max_ranges
        self._pending: dict[tuple[str, bool, int], RangeSet] = {}
        self._due: float | None = None

    def add(self, custodian: str, custody_id: int, accepted: bool, reason: int, now: float) -> None:
        ranges = self._pending.setdefault((custodian, accepted, reason), RangeSet())
        ranges.add(custody_id)
        due = now if len(ranges) >= self.max_ranges else now + self.delay
        self._due = due if self._due is None else min(self._due, due)

    @property
    def due(self) -> float | None:
        return self._due

    def take_due(self, now: float) -> list[tuple[str, CustodySignal]]:
        """Every pending signal, once the earliest is due (they travel together)."""
        if self._due is None or now < self._due:
            return []
        signals = []
        for (custodian, accepted, reason), ranges in self._pending.items():
            while len(ranges):
                signals.append(
                    (custodian, CustodySignal(accepted, reason, ranges.take(self.max_ranges)))
                )
        self._pending.clear()
        self._due = None
        return signals
