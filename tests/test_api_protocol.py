"""The API's sans-I/O framing and request schema."""

from __future__ import annotations

import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.api.protocol import (
    MAX_ACKS,
    MAX_EID,
    MessageReader,
    ProtocolError,
    encode_message,
    validate_request,
)

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20)
    | st.binary(max_size=50) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_messages = st.dictionaries(st.text(max_size=10), _values, max_size=6)


@settings(max_examples=60)
@given(st.lists(_messages, max_size=5), st.integers(1, 64))
def test_round_trip_in_any_split(messages: list[dict], step: int) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    reader = MessageReader()
    out: list[dict] = []
    for i in range(0, len(wire), step):
        out += reader.feed(wire[i : i + step])
    assert out == messages
    assert reader.pending == 0


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    reader = MessageReader(max_message=1 << 10)
    try:
        for message in reader.feed(data):
            assert isinstance(message, dict)
            try:
                validate_request(message)
            except ProtocolError as exc:
                assert exc.reason in ("bad_request", "unknown_op")
    except ProtocolError as exc:
        assert exc.reason in ("too_large", "bad_length", "bad_cbor", "not_a_map")


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200))
def test_random_framed_bodies_raise_only_protocol_error(body: bytes) -> None:
    try:
        MessageReader().feed(struct.pack(">I", len(body)) + body)
    except ProtocolError as exc:
        assert exc.reason in ("bad_cbor", "not_a_map")


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (struct.pack(">I", 1 << 20) , "too_large"),
        (struct.pack(">I", 0), "bad_length"),
        (struct.pack(">I", 1) + b"\xff", "bad_cbor"),
        (struct.pack(">I", 3) + b"\xa0\xa0\xa0", "bad_cbor"),  # trailing bytes after a map
        (encode_message([1, 2]), "not_a_map"),  # type: ignore[arg-type]
    ],
)
def test_frame_errors(wire: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        MessageReader(max_message=1000).feed(wire)
    assert info.value.reason == reason


def test_too_large_is_refused_from_the_header_alone() -> None:
    # the reader must not buffer a huge body before refusing it
    with pytest.raises(ProtocolError, match="too_large"):
        MessageReader(max_message=100).feed(struct.pack(">I", 101))


def test_partial_frame_is_pending() -> None:
    reader = MessageReader()
    wire = encode_message({"op": "status", "seq": 1})
    assert reader.feed(wire[:-1]) == []
    assert reader.pending == len(wire) - 1
    assert reader.feed(wire[-1:]) == [{"op": "status", "seq": 1}]


def test_valid_requests() -> None:
    assert validate_request({"op": "status", "seq": 3}) == ("status", 3)
    assert validate_request(
        {"op": "send", "seq": 1, "destination": "ipn:2.1", "data": b"x", "lifetime": 60,
         "custody": False, "priority": 2, "report": True, "source": "ipn:1.1"}
    ) == ("send", 1)
    assert validate_request({"op": "bundles", "seq": 0, "limit": 5}) == ("bundles", 0)


@pytest.mark.parametrize(
    ("message", "reason", "words"),
    [
        ({"op": "status"}, "bad_request", "seq"),
        ({"op": "status", "seq": "1"}, "bad_request", "seq"),
        ({"op": "status", "seq": True}, "bad_request", "seq"),
        ({"seq": 1}, "bad_request", "op"),
        ({"op": "fly", "seq": 1}, "unknown_op", "fly"),
        ({"op": "send", "seq": 1, "data": b""}, "bad_request", "destination"),
        ({"op": "send", "seq": 1, "destination": 5, "data": b""}, "bad_request", "destination"),
        ({"op": "send", "seq": 1, "destination": "x", "data": "text"}, "bad_request", "data"),
        ({"op": "send", "seq": 1, "destination": "x" * (MAX_EID + 1), "data": b""},
         "bad_request", "longer"),
        ({"op": "send", "seq": 1, "destination": "x", "data": b"", "custody": 1},
         "bad_request", "custody"),
        ({"op": "send", "seq": 1, "destination": "x", "data": b"", "priority": True},
         "bad_request", "priority"),
        ({"op": "ack", "seq": 1, "delivery": -1}, "bad_request", "negative"),
        ({"op": "ack", "seq": 1, "delivery": 1, "extra": 2}, "bad_request", "extra"),
        ({"op": "ack", "seq": 1}, "bad_request", "exactly one"),
        ({"op": "ack", "seq": 1, "delivery": 1, "deliveries": [2]}, "bad_request", "exactly one"),
        ({"op": "ack", "seq": 1, "deliveries": [1, -2]}, "bad_request", "non-negative"),
        ({"op": "ack", "seq": 1, "deliveries": [1, True]}, "bad_request", "non-negative"),
        ({"op": "ack", "seq": 1, "deliveries": 3}, "bad_request", "list"),
        ({"op": "ack", "seq": 1, "deliveries": list(range(MAX_ACKS + 1))}, "bad_request",
         "longer"),
    ],
)
def test_invalid_requests(message: dict, reason: str, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_request(message)
    assert info.value.reason == reason
    assert words in info.value.message


def test_encode_is_length_prefixed_cbor() -> None:
    wire = encode_message({"a": 1})
    assert struct.unpack(">I", wire[:4])[0] == len(wire) - 4
    assert cbor2.loads(wire[4:]) == {"a": 1}
