"""What the API server asks of the node (Service) and what it gives each client (Sink)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

ERROR_CODES = frozenset(
    {
        "bad_request", "too_large", "store_full", "unknown_op",
        "not_found", "bad_endpoint", "internal",
    }
)


class ApiError(Exception):
    """An error the server sends back as `{"ok": false, "error": {code, message}}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One application send; `data` is empty for a streamed send (chunks come separately)."""

    destination: str
    data: bytes = b""
    lifetime: float | None = None  # seconds; None = the node's default
    custody: bool = True
    priority: int = 1
    report: bool = False
    source: str | None = None  # None = the node's own endpoint
    size: int | None = None  # announced total for a stream
    name: str | None = None  # file name for a stream, informative
    # Sent `event`s for this bundle from its acceptance on (before its first transmission)
    watcher: Sink | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One bundle handed to a registered client; it stays in the store until acked."""

    endpoint: str
    delivery: int  # id the client acks, unique per node run
    bundle_id: str
    source: str
    data: bytes  # empty when `path` is given
    created: float  # mission Unix seconds
    # Large data (above the node's large_adu): the file holding it, on the node's machine. The
    # client may move it away before acking; the node removes what is left at the ack.
    path: str | None = None


class Sink(Protocol):
    """One per client connection, made by the server. Both calls are non-blocking."""

    def deliver(self, delivery: Delivery) -> None: ...
    def event(self, bundle_id: str, name: str, at: float, detail: str) -> None: ...


class Service(Protocol):
    """What the node daemon implements for the API server."""

    def hello(self) -> dict: ...
    async def send(self, request: SendRequest) -> str: ...  # bundle id, once durable
    async def send_stream(self, request: SendRequest, chunks: AsyncIterator[bytes]) -> str: ...
    def register(self, endpoint: str, sink: Sink) -> None: ...  # ApiError(bad_endpoint)
    def unregister(self, endpoint: str, sink: Sink) -> None: ...
    def ack(self, sink: Sink, delivery: int) -> None: ...  # ApiError(not_found)
    def watch(self, bundle_id: str, sink: Sink) -> None: ...
    def status(self) -> dict: ...
    def bundles(self, limit: int) -> list[dict]: ...
    def disconnected(self, sink: Sink) -> None: ...  # drop registrations; un-acked wait again
