"""Sans-I/O framing and message codec of the application API.

A frame is a 4-byte big-endian length then one CBOR map. `MessageReader` turns bytes into
messages; `validate_request` checks a request's fields against the op table.
"""

from __future__ import annotations

import io
import struct

import cbor2

DEFAULT_MAX_MESSAGE = 16 << 20
MAX_EID = 1024
MAX_NAME = 4096
MAX_BUNDLE_ID = 2048
MAX_ACKS = 4096  # deliveries one ack request may name
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; `reason` is a short machine word."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message or reason


def encode_frame(message: dict) -> tuple[bytes, bytes]:
    """A message's length header and CBOR body, apart: a large body can be written as it is
    rather than copied behind its header."""
    body = cbor2.dumps(message)
    return _HEADER.pack(len(body)), body


def encode_message(message: dict) -> bytes:
    header, body = encode_frame(message)
    return header + body


class MessageReader:
    """Feed bytes, get whole messages (dicts). Raises ProtocolError; after one, stop using it."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (non-zero at EOF means a mid-message disconnect)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict]:
        # Whole frames are decoded from where they lie (`data` itself when nothing is held):
        # each body is copied once, and only an incomplete frame's bytes are kept.
        held = self._buffer
        if held:
            held += data
        source = held if held else data
        out: list[dict] = []
        pos, end = 0, len(source)
        with memoryview(source) as view:
            while end - pos >= 4:
                (length,) = _HEADER.unpack_from(view, pos)
                if length > self.max_message:
                    raise ProtocolError(
                        "too_large", f"message of {length} bytes > {self.max_message}")
                if length == 0:
                    raise ProtocolError("bad_length", "empty message")
                if end - pos < 4 + length:
                    break
                out.append(decode_body(bytes(view[pos + 4 : pos + 4 + length])))
                pos += 4 + length
            if source is not held:
                held += view[pos:]
        if source is held:
            del held[:pos]
        return out


def decode_body(body: bytes) -> dict:
    stream = io.BytesIO(body)
    try:
        message = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types on garbage; all mean the same here
        raise ProtocolError("bad_cbor", str(exc)[:200]) from None
    if stream.tell() != len(body):  # cbor2 ignores trailing bytes; a frame holds one item
        raise ProtocolError("bad_cbor", f"{len(body) - stream.tell()} bytes after the map")
    if not isinstance(message, dict):
        raise ProtocolError("not_a_map", f"got {type(message).__name__}")
    return message


# op -> {field: (types, required, max length or None)}
_STR, _BYTES, _INT, _BOOL = (str,), (bytes,), (int,), (bool,)
_NUM = (int, float)
_INTS = (list,)  # of non-negative ints
_SEND_OPTS = {
    "lifetime": (_NUM, False, None),
    "custody": (_BOOL, False, None),
    "priority": (_INT, False, None),
    "report": (_BOOL, False, None),
    "source": (_STR, False, MAX_EID),
    "watch": (_BOOL, False, None),
}
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool, int | None]]] = {
    "hello": {"version": (_INT, False, None)},
    "send": {"destination": (_STR, True, MAX_EID), "data": (_BYTES, True, None), **_SEND_OPTS},
    "send_begin": {
        "destination": (_STR, True, MAX_EID),
        "size": (_INT, True, None),
        "name": (_STR, False, MAX_NAME),
        **_SEND_OPTS,
    },
    "send_chunk": {"stream": (_INT, True, None), "data": (_BYTES, True, None)},
    "send_end": {"stream": (_INT, True, None)},
    "register": {"endpoint": (_STR, True, MAX_EID)},
    "unregister": {"endpoint": (_STR, True, MAX_EID)},
    "ack": {"delivery": (_INT, False, None), "deliveries": (_INTS, False, MAX_ACKS)},
    "status": {},
    "bundles": {"limit": (_INT, False, None)},
    "watch": {"bundle_id": (_STR, True, MAX_BUNDLE_ID)},
}
# op -> fields of which a request carries exactly one
EXACTLY_ONE = {"ack": ("delivery", "deliveries")}


def validate_request(message: dict) -> tuple[str, int]:
    """Check `op`, `seq` and the op's fields. Returns (op, seq).

    Raises ApiError-shaped ProtocolError: reason `bad_request` or `unknown_op`.
    """
    seq = message.get("seq")
    if type(seq) is not int:
        raise ProtocolError("bad_request", "seq: expected int")
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", "op: expected str")
    fields = SCHEMA.get(op)
    if fields is None:
        raise ProtocolError("unknown_op", f"unknown op {op[:64]!r}")
    for key in message:
        if key not in fields and key not in ("op", "seq"):
            raise ProtocolError("bad_request", f"{op}: unexpected field {str(key)[:64]!r}")
    for name, (types, required, limit) in fields.items():
        if name not in message:
            if required:
                raise ProtocolError("bad_request", f"{op}: missing field {name!r}")
            continue
        value = message[name]
        # bool is an int subclass; an int field must not take True
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise ProtocolError(
                "bad_request", f"{op}.{name}: expected {'/'.join(t.__name__ for t in types)}"
            )
        if limit is not None and len(value) > limit:
            raise ProtocolError("bad_request", f"{op}.{name}: longer than {limit}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ProtocolError("bad_request", f"{op}.{name}: negative")
        if types is _INTS and not all(type(item) is int and item >= 0 for item in value):
            raise ProtocolError("bad_request", f"{op}.{name}: expected non-negative ints")
    one_of = EXACTLY_ONE.get(op)
    if one_of is not None and sum(name in message for name in one_of) != 1:
        raise ProtocolError("bad_request", f"{op}: exactly one of {' or '.join(one_of)}")
    return op, seq
