"""Buffered OS randomness for IVs and keys: sizes, no reuse, and no sharing across fork."""

import os

import pytest

from dtn.security.randomness import BufferedRandom


def test_draws_have_the_size_asked_for_and_never_repeat():
    draw = BufferedRandom()
    sizes = [12, 16, 32, 1, 5000, 12, 4096, 12]  # across block boundaries, and over a block
    values = [draw(size) for size in sizes]
    assert [len(value) for value in values] == sizes
    ivs = {draw(12) for _ in range(2000)}
    assert len(ivs) == 2000


def test_two_readers_do_not_share_bytes():
    first, second = BufferedRandom(), BufferedRandom()
    assert first(12) != second(12)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_hands_out_the_parents_bytes():
    """Without the fork hook, parent and child would draw the same next IV from the copied
    buffer, and two processes would encrypt under one key with one IV."""
    draw = BufferedRandom()
    draw(12)  # the buffer now holds unread bytes the child inherits
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next draw, then leave without running pytest's exit
        os.close(read_end)
        os.write(write_end, draw(12))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 12)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 12 and child != draw(12)
