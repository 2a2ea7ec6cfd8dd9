"""The Abstract Security Block (RFC 9172 §3.6): the block-type-specific data of a BIB or a BCB.

An ASB is a CBOR sequence (not an array) of: security targets (array of block numbers), security
context id (int), security context flags (bit 0: parameters present), security source (EID),
the parameters if flagged (array of [id, value]), and the results (one array of [id, value]
per target, in target order).

The decoder is strict and bounded: it reuses the bundle codec's CBOR reader, so every length is
checked before slicing and nesting is bounded. Parameter and result values are kept as `int` (for
an unsigned integer), `bytes` (for a byte string) or `RawValue` (any other item, kept encoded so
a security context that does not expect it can say so).

The blocks a security source writes differ from bundle to bundle only in the contents of byte
strings (IV, tag, HMAC, wrapped key). A `Layout` is an ASB's bytes with those contents cut out:
it writes the next block by splicing new contents in (`fill`), and recognises one by comparing
the bytes around them (`match`). The decoder remembers the layouts of the ASBs it parsed: an ASB
that matches one has the same structure, already checked, and is read at a fraction of the cost
of a parse. Anything else takes the strict parser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import TypeVar

from dtn.bundle import EID, BundleError, cbor
from dtn.bundle.eid import decode_eid

from .errors import Reason, SecurityError

PARAMETERS_PRESENT = 0x01  # the only security context flag RFC 9172 assigns
_ASB_RULE = "RFC 9172 §3.6"  # every structural defect of an ASB breaks the ASB definition


@dataclass(frozen=True, slots=True)
class RawValue:
    """A parameter or result value that is neither an unsigned integer nor a byte string."""

    encoded: bytes


Value = int | bytes | RawValue
T = TypeVar("T")


@dataclass(slots=True)
class AbstractSecurityBlock:
    targets: list[int]
    context_id: int
    source: EID
    parameters: dict[int, Value]
    results: list[dict[int, Value]]  # one per target, in the order of `targets`

    def encode(self) -> bytes:
        return b"".join(self._encode_parts([]))

    def layout(self) -> Layout:
        """This block's encoding as a template whose holes are its byte-string values (it keeps
        a copy of the block: changing the block later does not change the layout)."""
        holes: list[int] = []
        parts = self._encode_parts(holes)
        spans, position = [], 0
        for index, part in enumerate(parts):
            if index in holes:
                spans.append((position, position + len(part)))
            position += len(part)
        return Layout(b"".join(parts), spans, _copy(self))

    def _encode_parts(self, holes: list[int]) -> list[bytes]:
        """The encoding in parts; `holes` collects the indexes of byte-string value parts."""
        parts = [cbor.head(cbor.ARRAY, len(self.targets))]
        parts.extend(map(cbor.uint, self.targets))
        parts.append(_encode_int(self.context_id))
        parts.append(cbor.uint(PARAMETERS_PRESENT if self.parameters else 0))
        parts.append(self.source.to_cbor())
        if self.parameters:
            _append_pairs(parts, self.parameters, holes)
        parts.append(cbor.head(cbor.ARRAY, len(self.results)))
        for result in self.results:
            _append_pairs(parts, result, holes)
        return parts

    @classmethod
    def decode(cls, data: bytes, what: str = "security block") -> AbstractSecurityBlock:
        """Parse an ASB; SecurityError(MALFORMED) for anything RFC 9172 §3.6 does not allow."""
        for layout in _layouts.get(len(data), ()):
            values = layout.match(data)
            if values is not None:
                return layout.with_values(values)
        spans: list[tuple[int, int]] = []
        try:
            asb = _decode(data, what, spans)
        except BundleError as exc:
            rule = "" if "RFC 9172" in str(exc) else f" ({_ASB_RULE})"
            raise SecurityError(Reason.MALFORMED, f"{what}: {exc}{rule}") from None
        except IndexError:
            message = f"{what}: data is truncated ({_ASB_RULE})"
            raise SecurityError(Reason.MALFORMED, message) from None
        _remember(data, asb, spans)
        return asb


class Layout:
    """An ASB's encoding with the contents of its byte-string values cut out: the holes.

    Every ASB with the same structure and the same values outside the holes, byte-string lengths
    included, has these bytes around them. `asb` is the block the layout was taken from. Built
    for received ASBs too, so cheap to build: no parsing, no regular expression."""

    __slots__ = ("asb", "holes", "pieces", "_format", "_size", "_fixed", "_fixed_at", "_holes_at")

    def __init__(self, encoded: bytes, holes: list[tuple[int, int]], asb: AbstractSecurityBlock):
        self.asb = asb
        self.holes = tuple(holes)
        pieces, fixed, position = [], [], 0  # the bytes between holes, and where they lie
        for start, end in [*self.holes, (len(encoded), len(encoded))]:
            pieces.append(encoded[position:start])
            if start > position:
                fixed.append(slice(position, start))
            position = end
        self._size = len(encoded)
        self._fixed_at = _reader(fixed)
        self._fixed = self._fixed_at(encoded)
        self._holes_at = _reader([slice(start, end) for start, end in self.holes])
        self.pieces = tuple(pieces)  # the bytes before, between and after the holes
        self._format = b"%b".join(piece.replace(b"%", b"%%") for piece in pieces)

    def match(self, data: bytes) -> tuple[bytes, ...] | None:
        """The contents of the holes, in order, if `data` has this layout; None otherwise."""
        if len(data) != self._size or self._fixed_at(data) != self._fixed:
            return None
        return self._holes_at(data)

    def fill(self, values: tuple[bytes, ...]) -> bytes:
        """The encoding with `values` in the holes. Each must have its hole's length (the CBOR
        heads before them are part of the layout); the caller sees to that."""
        return self._format % values

    def with_values(self, values: tuple[bytes, ...]) -> AbstractSecurityBlock:
        """A new AbstractSecurityBlock: `asb` with `values` in place of its byte strings."""
        asb = self.asb
        remaining = iter(values)
        return AbstractSecurityBlock(
            list(asb.targets),
            asb.context_id,
            asb.source,
            _with_values(asb.parameters, remaining),
            [_with_values(result, remaining) for result in asb.results],
        )


def template_layout(
    target: int,
    context_id: int,
    source: EID,
    parameters: dict[int, Value],
    result_id: int,
    result_size: int,
) -> Layout:
    """The layout of a one-target ASB whose byte strings (in `parameters`, and the one result
    of `result_size` bytes) are placeholders: what a template fills in bundle after bundle."""
    asb = AbstractSecurityBlock(
        [target], context_id, source, parameters, [{result_id: bytes(result_size)}]
    )
    return asb.layout()


def _reader(slices: list[slice]) -> Callable[[bytes], tuple[bytes, ...]]:
    """A function that reads `slices` of its argument, as a tuple: one C call when it can."""
    if len(slices) >= 2:
        return itemgetter(*slices)
    return lambda data: tuple(data[piece] for piece in slices)


def _with_values(pairs: dict[int, Value], values: Iterator[bytes]) -> dict[int, Value]:
    return {
        key: next(values) if value.__class__ is bytes else value for key, value in pairs.items()
    }


_layouts: dict[int, list[Layout]] = {}  # by ASB length
_LAYOUTS_MAX = 64  # a node sees a few per security source; past this, start over


def _remember(data: bytes, asb: AbstractSecurityBlock, holes: list[tuple[int, int]]) -> None:
    """Keep the layout of a strictly parsed ASB."""
    if sum(map(len, _layouts.values())) >= _LAYOUTS_MAX:
        _layouts.clear()
    _layouts.setdefault(len(data), []).append(Layout(bytes(data), holes, _copy(asb)))


def _copy(asb: AbstractSecurityBlock) -> AbstractSecurityBlock:
    return AbstractSecurityBlock(
        list(asb.targets),
        asb.context_id,
        asb.source,
        dict(asb.parameters),
        [dict(result) for result in asb.results],
    )


def _decode(data: bytes, what: str, spans: list[tuple[int, int]]) -> AbstractSecurityBlock:
    """The strict parse. `spans` collects where byte-string values lie, in parse order."""
    targets, pos = _read_array(data, 0, f"{what} security targets", _read_target)
    if not targets:
        raise BundleError("security targets must not be empty (RFC 9172 §3.6)")
    if len(set(targets)) != len(targets):
        raise BundleError(f"security targets list a block twice (RFC 9172 §3.6): {targets}")
    context_id, pos = _read_int(data, pos, "security context id")
    flags, pos = cbor.read_uint(data, pos, "security context flags")
    source, pos = decode_eid(data, pos, "security source")
    parameters: dict[int, Value] = {}
    if flags & PARAMETERS_PRESENT:
        parameters, pos = _read_pairs(data, pos, "security context parameters", spans)
    results, pos = _read_array(
        data, pos, "security results", lambda d, p: _read_pairs(d, p, "security result set", spans)
    )
    if len(results) != len(targets):
        raise BundleError(
            f"{len(results)} result sets for {len(targets)} security targets "
            "(RFC 9172 §3.6: one per target)"
        )
    if pos != len(data):
        raise BundleError(f"{len(data) - pos} bytes after the abstract security block")
    return AbstractSecurityBlock(targets, context_id, source, parameters, results)


def _read_array(
    data: bytes, pos: int, what: str, read_item: Callable[[bytes, int], tuple[T, int]]
) -> tuple[list[T], int]:
    count, pos = cbor.read_array(data, pos, what)
    items = []
    if count == cbor.INDEFINITE:
        while data[pos] != cbor.BREAK:
            item, pos = read_item(data, pos)
            items.append(item)
        return items, pos + 1
    for _ in range(count):
        item, pos = read_item(data, pos)
        items.append(item)
    return items, pos


def _read_target(data: bytes, pos: int) -> tuple[int, int]:
    return cbor.read_uint(data, pos, "security target")


def _read_int(data: bytes, pos: int, what: str) -> tuple[int, int]:
    major, value, end = cbor.read_head(data, pos)
    if major == cbor.UINT:
        return value, end
    if major == cbor.NEGINT:
        return -1 - value, end
    raise BundleError(f"{what} must be an integer, found {cbor.major_name(major)} at byte {pos}")


def _read_pairs(
    data: bytes, pos: int, what: str, spans: list[tuple[int, int]]
) -> tuple[dict[int, Value], int]:
    pairs, pos = _read_array(data, pos, what, lambda d, p: _read_pair(d, p, spans))
    ids = [pair_id for pair_id, _ in pairs]
    if len(set(ids)) != len(ids):
        raise BundleError(f"{what} repeat an id: {ids}")
    return dict(pairs), pos


def _read_pair(
    data: bytes, pos: int, spans: list[tuple[int, int]]
) -> tuple[tuple[int, Value], int]:
    count, item = cbor.read_array(data, pos, "[id, value] pair")
    if count not in (2, cbor.INDEFINITE):
        raise BundleError(f"an [id, value] pair must have 2 items, found {count} at byte {pos}")
    pair_id, item = cbor.read_uint(data, item, "parameter or result id")
    major = data[item] >> 5
    if major == cbor.UINT:
        value, item = cbor.read_uint(data, item, "value")
    elif major == cbor.BYTES:
        start, item = cbor.read_bytes(data, item, "value")
        value = bytes(data[start:item])
        spans.append((start, item))
    else:
        end = cbor.skip_item(data, item)
        value, item = RawValue(bytes(data[item:end])), end
    if count == cbor.INDEFINITE:
        if data[item] != cbor.BREAK:
            raise BundleError(f"an [id, value] pair at byte {pos} has more than 2 items")
        item += 1
    return (pair_id, value), item


def _encode_int(value: int) -> bytes:
    return cbor.uint(value) if value >= 0 else cbor.head(cbor.NEGINT, -1 - value)


def _append_pairs(parts: list[bytes], pairs: dict[int, Value], holes: list[int]) -> None:
    parts.append(cbor.head(cbor.ARRAY, len(pairs)))
    for pair_id, value in pairs.items():
        parts.append(b"\x82")
        parts.append(cbor.uint(pair_id))
        if isinstance(value, bytes):
            parts.append(cbor.head(cbor.BYTES, len(value)))
            holes.append(len(parts))
            parts.append(value)
        elif isinstance(value, RawValue):
            parts.append(value.encoded)
        else:
            parts.append(cbor.uint(value))
