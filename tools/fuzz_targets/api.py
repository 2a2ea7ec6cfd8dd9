"""The application API protocol decoder (dtn.api.protocol: MessageReader framing, the CBOR
body, validate_request) on mutated frames. The first input byte sets the size of the chunks
the rest is fed in; fed whole or in chunks the stream must give the same messages (or the
same error). ProtocolError is the typed error."""

from __future__ import annotations

from dtn.api.protocol import MessageReader, ProtocolError, encode_message, validate_request

_MAX_MESSAGE = 1 << 16


def _read(stream: bytes, chunk: int) -> tuple[list[dict], str | None]:
    """The messages of `stream` fed `chunk` bytes at a time, and the error reason if any."""
    reader, messages = MessageReader(_MAX_MESSAGE), []
    try:
        for start in range(0, len(stream), chunk):
            messages += reader.feed(stream[start : start + chunk])
    except ProtocolError as error:
        return messages, error.reason
    return messages, None


def test_one_input(data: bytes) -> None:
    if not data:
        return
    stream = data[1:]
    whole, whole_error = _read(stream, max(len(stream), 1))
    chunked, chunked_error = _read(stream, 1 + data[0] % 64)
    # repr: a NaN in a message is not equal to itself
    if whole_error != chunked_error or repr(whole) != repr(chunked[: len(whole)]):
        raise AssertionError(f"chunked feed differs: {whole!r} {whole_error} / {chunked!r} "
                             f"{chunked_error}")
    for message in whole:
        try:
            validate_request(message)
        except ProtocolError:
            continue


def seeds() -> list[bytes]:
    requests = [
        {"op": "hello", "seq": 0, "version": 1},
        {"op": "register", "seq": 1, "endpoint": "ipn:2.1"},
        {"op": "send", "seq": 2, "destination": "ipn:2.1", "data": b"hello mars",
         "lifetime": 3600.5, "custody": True, "priority": 2, "report": False,
         "source": "ipn:1.1"},
        {"op": "send_begin", "seq": 3, "destination": "dtn://mars/files", "size": 10,
         "name": "image.png"},
        {"op": "send_chunk", "seq": 4, "stream": 1, "data": b"\x00" * 10},
        {"op": "send_end", "seq": 5, "stream": 1},
        {"op": "ack", "seq": 6, "delivery": 7},
        {"op": "status", "seq": 7},
        {"op": "bundles", "seq": 8, "limit": 5},
        {"op": "watch", "seq": 9, "bundle_id": "ipn:1.1/800000.0"},
        {"op": "unregister", "seq": 10, "endpoint": "ipn:2.1"},
    ]
    frames = [encode_message(request) for request in requests]
    return [bytes([chunk]) + frame for chunk, frame in enumerate(frames)] + [
        b"\x03" + b"".join(frames)
    ]
