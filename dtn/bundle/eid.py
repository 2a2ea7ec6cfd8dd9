"""Endpoint IDs (RFC 9171 4.2.5): `dtn:none`, `dtn://node/demux`, `ipn:node.service`."""

from __future__ import annotations

import re

from . import cbor
from .errors import BundleError

DTN_SCHEME = 1
IPN_SCHEME = 2
_UINT64_MAX = (1 << 64) - 1
_MAX_EID_TEXT = 1024  # bytes; a node name longer than this is an attack, not a name


class EID:
    """An endpoint ID. Immutable; equal when scheme and scheme-specific part are equal.

    `ssp` is 0 for dtn:none, the text after `dtn:` for other dtn EIDs, and (node, service) for ipn.
    """

    __slots__ = ("scheme", "ssp", "_text", "_cbor", "is_singleton", "is_null")

    def __init__(self, scheme: int, ssp: int | str | tuple[int, int]) -> None:
        self.scheme = scheme
        self.ssp = ssp
        self.is_null = scheme == DTN_SCHEME and ssp == 0
        # At most one node registers in the endpoint (RFC 9171 4.2.5.1.1: a dtn demux that
        # starts with '~' names a group).
        self.is_singleton = not (scheme == DTN_SCHEME and ssp != 0
                                 and ssp[2:].partition("/")[2].startswith("~"))
        if scheme == DTN_SCHEME:
            if ssp == 0:
                self._text = "dtn:none"
                self._cbor = b"\x82\x01\x00"
            else:
                _check_dtn_ssp(ssp)
                self._text = "dtn:" + ssp
                self._cbor = b"\x82\x01" + cbor.text_string(ssp)
        elif scheme == IPN_SCHEME:
            node, service = ssp
            if not (0 <= node <= _UINT64_MAX and 0 <= service <= _UINT64_MAX):
                raise BundleError(f"ipn EID numbers out of range: {node}.{service} "
                                  "(RFC 9171 §4.2.5.1.2)")
            self._text = f"ipn:{node}.{service}"
            self._cbor = b"\x82\x02\x82" + cbor.uint(node) + cbor.uint(service)
        else:
            raise BundleError(f"unsupported EID scheme code {scheme} (RFC 9171 §4.2.5.1)")

    @classmethod
    def parse(cls, text: str) -> EID:
        """An EID from its URI text; BundleError when it is not a valid dtn or ipn EID."""
        if not isinstance(text, str) or len(text) > _MAX_EID_TEXT:
            raise BundleError(f"not an EID: {text!r:.80}")
        if text == "dtn:none":
            return NULL_EID
        if text.startswith("dtn:"):
            return cls(DTN_SCHEME, text[4:])
        if text.startswith("ipn:"):
            node, dot, service = text[4:].partition(".")
            if not (dot and node.isdigit() and service.isdigit() and node.isascii()
                    and service.isascii()):
                raise BundleError(f"ipn EID must be ipn:<node>.<service>, got {text!r:.80} "
                                  "(RFC 9171 §4.2.5.1.2)")
            return cls(IPN_SCHEME, (int(node), int(service)))
        raise BundleError(f"EID must start with dtn: or ipn:, got {text!r:.80} "
                          "(RFC 9171 §4.2.5.1)")

    @classmethod
    def ipn(cls, node: int, service: int) -> EID:
        return cls(IPN_SCHEME, (node, service))

    def to_cbor(self) -> bytes:
        """Deterministic CBOR encoding ([scheme, ssp])."""
        return self._cbor

    @property
    def node_id(self) -> EID:
        """The node ID of the node that hosts this endpoint: ipn:N.0 or dtn://node/."""
        if self.scheme == IPN_SCHEME:
            return EID(IPN_SCHEME, (self.ssp[0], 0))
        if self.ssp == 0:
            return self
        return EID(DTN_SCHEME, "//" + self.ssp[2:].partition("/")[0] + "/")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"EID({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EID) and self._cbor == other._cbor

    def __hash__(self) -> int:
        return hash(self._cbor)


# node-name = reg-name (RFC 3986 §3.2.2): unreserved / pct-encoded / sub-delims
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


def _check_dtn_ssp(ssp: object) -> None:
    # dtn-hier-part = "//" node-name "/" demux; node-name = reg-name; demux = *VCHAR. An empty
    # node name (reg-name allows it) is refused: it names no node.
    if not isinstance(ssp, str) or not ssp.startswith("//"):
        raise BundleError(f"dtn EID must be dtn://<node>/<demux>, got dtn:{ssp!r:.80} "
                          "(RFC 9171 §4.2.5.1.1)")
    node, slash, demux = ssp[2:].partition("/")
    if not node or not slash:
        raise BundleError(f"dtn EID needs a node name and a '/' after it: dtn:{ssp!r:.80} "
                          "(RFC 9171 §4.2.5.1.1)")
    if len(ssp) > _MAX_EID_TEXT or not all("\x21" <= ch <= "\x7e" for ch in demux):
        raise BundleError(f"dtn EID demux holds characters outside VCHAR: dtn:{ssp!r:.80} "
                          "(RFC 9171 §4.2.5.1.1)")
    if _REG_NAME.fullmatch(node) is None:
        raise BundleError(f"dtn EID node name is not a reg-name (letters, digits, -._~, "
                          f"!$&'()*+,;= and %XX only): dtn:{ssp!r:.80} (RFC 9171 §4.2.5.1.1)")


NULL_EID = EID(DTN_SCHEME, 0)

eid_cache: dict[bytes, EID] = {}  # EIDs recur in every bundle; parse each encoding once
_DECODED_CACHE_MAX = 4096


def decode_eid(data: bytes, pos: int, what: str) -> tuple[EID, int]:
    """An EID encoded at `pos`: (EID, position after it)."""
    count, item = cbor.read_array_of(data, pos, 2, f"{what} (RFC 9171 §4.2.5.1)")
    scheme, item = cbor.read_uint(data, item, f"{what} scheme code (RFC 9171 §4.2.5.1)")
    if scheme == DTN_SCHEME:
        major = data[item] >> 5
        if major == cbor.UINT:
            value, end = cbor.read_uint(data, item, f"{what} dtn SSP (RFC 9171 §4.2.5.1.1)")
            if value != 0:
                raise BundleError(f"{what}: dtn SSP integer must be 0 (dtn:none), got {value} "
                                  "(RFC 9171 §4.2.5.1.1)")
            eid = NULL_EID
        else:
            text, end = cbor.read_text(data, item, f"{what} dtn SSP (RFC 9171 §4.2.5.1.1)")
            eid = None
    elif scheme == IPN_SCHEME:
        ipn = f"{what} ipn SSP (RFC 9171 §4.2.5.1.2)"
        inner, end = cbor.read_array_of(data, item, 2, ipn)
        node, end = cbor.read_uint(data, end, f"{ipn} node number")
        service, end = cbor.read_uint(data, end, f"{ipn} service number")
        end = cbor.close_array(data, inner, end, ipn)
        eid = None
    elif scheme == 0:
        raise BundleError(f"{what}: EID scheme code 0 is reserved (RFC 9171 §4.2.5.1, §9.6)")
    else:
        raise BundleError(f"{what}: unsupported EID scheme code {scheme} (RFC 9171 §4.2.5.1)")
    end = cbor.close_array(data, count, end, f"{what} (RFC 9171 §4.2.5.1)")
    raw = data[pos:end]
    cached = eid_cache.get(raw)
    if cached is not None:
        return cached, end
    if eid is None:
        eid = EID(DTN_SCHEME, text) if scheme == DTN_SCHEME else EID(IPN_SCHEME, (node, service))
    if len(eid_cache) >= _DECODED_CACHE_MAX:
        eid_cache.clear()
    eid_cache[bytes(raw)] = eid
    return eid, end


def eid_from_span(data: bytes, span: tuple[int, int], what: str) -> EID:
    """The EID encoded at data[start:end], from the cache of recent encodings when it is there."""
    start, end = span
    eid = eid_cache.get(data[start:end])
    if eid is None:
        eid, stop = decode_eid(data, start, what)
        if stop != end:
            raise BundleError(f"{what}: malformed EID encoding at byte {start} "
                              "(RFC 9171 §4.2.5.1)")
    return eid
