"""Writing large output to an asyncio stream without copying it (the API server's and the
stream convergence layers' shells): asyncio copies whatever the socket does not take at once
into its own buffer, and each fresh megabyte costs its page faults again. So output is given
to the transport a piece at a time, and only once the transport has sent the last.
"""

from __future__ import annotations

import asyncio
from collections import deque

WRITE_PIECE = 1 << 18  # bytes given to the transport at a time


def drain_waits_for_all(writer: asyncio.StreamWriter) -> None:
    """Make `writer.drain()` return only once the transport has sent everything."""
    writer.transport.set_write_buffer_limits(high=0)


def write_while_sent(
    writer: asyncio.StreamWriter, unsent: deque[memoryview], *, everything: bool = False
) -> int:
    """Give the transport pieces of `unsent` (at most WRITE_PIECE each) while it sends them at
    once, or all of it with `everything` (to close the connection after); the bytes given."""
    transport, given = writer.transport, 0
    while unsent and (everything or not transport.get_write_buffer_size()):
        piece = unsent.popleft()
        if len(piece) > WRITE_PIECE:
            unsent.appendleft(piece[WRITE_PIECE:])
            piece = piece[:WRITE_PIECE]
        given += len(piece)
        writer.write(piece)
    return given
