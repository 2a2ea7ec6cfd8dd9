"""A minimal HTTP endpoint serving Prometheus metrics (GET /metrics), on asyncio streams.

Requests are untrusted: the head is bounded to 8 KiB and 5 s, anything but GET /metrics is 404 or
405, and every connection is closed after one response.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(address: tuple[str, int], render: Callable[[], str]) -> asyncio.Server:
    """Start serving `render()` at http://host:port/metrics."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, body = _respond(head, render)
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass  # a client that hung up, dawdled or sent too much gets nothing
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, *address, limit=MAX_REQUEST_HEAD)


def _respond(head: bytes, render: Callable[[], str]) -> tuple[str, str]:
    method, _, rest = head.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if method != b"GET":
        return "405 Method Not Allowed", "only GET\n"
    if target != b"/metrics":
        return "404 Not Found", "metrics are at /metrics\n"
    return "200 OK", render()
