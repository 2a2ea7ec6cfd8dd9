"""Random bytes for IVs and content keys, drawn from the OS in blocks.

os.urandom is a system call (~0.45 us); a sealed bundle needs 12 bytes of IV, so the pipeline
takes them from a block of OS randomness read 4 KiB at a time: the same bytes, fewer calls.
A forked child must never hand out its parent's bytes (two processes would reuse IVs under one
key, which breaks AES-GCM), so every reader drops its buffer in the child after a fork.
"""

from __future__ import annotations

import os
import weakref

_BLOCK = 4096
_readers: weakref.WeakSet[BufferedRandom] = weakref.WeakSet()


class BufferedRandom:
    """A RandomBytes callable: `reader(n)` gives n bytes of OS randomness, each byte once."""

    __slots__ = ("_buffer", "_position", "__weakref__")

    def __init__(self) -> None:
        self._buffer = b""
        self._position = 0
        _readers.add(self)

    def __call__(self, size: int) -> bytes:
        start = self._position
        end = start + size
        if end > len(self._buffer):
            self._buffer = os.urandom(max(_BLOCK, size))
            start, end = 0, size
        self._position = end
        return self._buffer[start:end]

    def _forget(self) -> None:
        self._buffer, self._position = b"", 0


def _after_fork_in_child() -> None:
    for reader in list(_readers):
        reader._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
