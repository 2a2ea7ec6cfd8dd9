"""The link frame: round trips, random and burst errors, and hostile datagrams."""

import os
import struct

import crc32c
import numpy as np
import pytest

from dtn.fec import DEPTHS, FrameConfig, FrameError, decode_frame, decode_frames, encode_frames, rs
from dtn.fec import frame as fmt


def layout_of(datagram: bytes, depth: int) -> fmt.Layout:
    return fmt.Layout.for_body(len(datagram) - fmt.PREFIX_LEN, depth)


def symbol_offset(layout: fmt.Layout, group: int, slot: int, symbol: np.ndarray) -> np.ndarray:
    """Byte offset in the datagram of `symbol` of codeword `slot` in codeblock `group`."""
    return fmt.PREFIX_LEN + (group * layout.length + symbol) * layout.depth + slot


def recode(datagram: bytes, depth: int, edit, dual_basis: bool = False) -> bytes:
    """Apply `edit` to the frame's content bytes and give it fresh, valid parity."""
    layout = layout_of(datagram, depth)
    frame = np.frombuffer(datagram, dtype=np.uint8).copy()
    blocks = frame[fmt.PREFIX_LEN :].reshape(layout.groups, layout.length, depth)
    content = bytearray(blocks[:, : layout.data_len].tobytes())
    edit(content)
    blocks[:, : layout.data_len] = np.frombuffer(bytes(content), np.uint8).reshape(
        layout.groups, layout.data_len, depth
    )
    data = blocks[:, : layout.data_len].transpose(0, 2, 1)
    blocks[:, layout.data_len :] = rs.codec(dual_basis).parity(data).transpose(0, 2, 1)
    return frame.tobytes()


def with_crc(content: bytearray) -> None:
    """Recompute the CRC after the payload that the header announces."""
    (length,) = struct.unpack_from(">I", content, 24)
    end = fmt.HEADER.itemsize + length
    content[end : end + 4] = crc32c.crc32c(bytes(content[:end])).to_bytes(4, "big")


def payload_of(frames: list[bytes], fallback=None) -> bytes:
    results = decode_frames(frames, fallback)
    assert all(isinstance(r, fmt.DecodedFrame) for r in results), results
    return b"".join(r.payload for r in sorted(results, key=lambda r: r.index))


@pytest.mark.parametrize("dual_basis", [False, True])
@pytest.mark.parametrize("depth", DEPTHS)
def test_round_trip_at_every_depth(depth, dual_basis):
    config = FrameConfig(frame_size=4096, depth=depth, dual_basis=dual_basis)
    per_frame = config.payload_per_frame
    for size in (0, 1, per_frame - 1, per_frame, per_frame + 1, 3 * per_frame + 17):
        data = os.urandom(size)
        frames = encode_frames(config, 12345, data)
        assert len(frames) == max(1, -(-size // per_frame))
        assert all(len(f) <= config.frame_size for f in frames)
        assert payload_of(frames) == data


def test_frames_carry_their_place_in_the_bundle():
    config = FrameConfig(frame_size=2048, depth=2)
    data = os.urandom(5000)
    frames = encode_frames(config, 2**64 - 1, data)
    decoded = [decode_frame(f) for f in frames]
    assert [(d.bundle_id, d.index, d.count, d.bundle_length) for d in decoded] == [
        (2**64 - 1, i, len(frames), 5000) for i in range(len(frames))
    ]
    assert all(d.corrected_symbols == 0 for d in decoded)


def test_small_frame_sizes_use_one_shortened_codeblock():
    config = FrameConfig(frame_size=300, depth=2)
    assert config.full_layout() == fmt.Layout(depth=2, groups=1, length=145)
    assert payload_of(encode_frames(config, 1, b"x" * 1000)) == b"x" * 1000


def test_config_is_validated():
    with pytest.raises(ValueError, match="depth"):
        FrameConfig(depth=6)
    with pytest.raises(ValueError, match="frame_size"):
        FrameConfig(frame_size=70_000)
    with pytest.raises(ValueError, match="no room"):
        FrameConfig(frame_size=60, depth=1)
    with pytest.raises(ValueError, match="64 bits"):
        encode_frames(FrameConfig(), -1, b"")


@pytest.mark.parametrize("depth", DEPTHS)
def test_16_random_errors_in_every_codeword_are_corrected(depth):
    rng = np.random.default_rng(depth)
    config = FrameConfig(frame_size=3000, depth=depth)
    data = os.urandom(3 * config.payload_per_frame)
    frames = encode_frames(config, 7, data)
    damaged = []
    for datagram in frames:
        frame = bytearray(datagram)
        layout = layout_of(datagram, depth)
        for group in range(layout.groups):
            for slot in range(depth):
                symbols = rng.choice(layout.length, rs.T, replace=False)
                for offset in symbol_offset(layout, group, slot, symbols):
                    frame[offset] ^= int(rng.integers(1, 256))
        damaged.append(bytes(frame))
    results = decode_frames(damaged)
    assert payload_of(damaged) == data
    assert all(r.corrected_symbols == rs.T * depth * layout.groups for r in results)


@pytest.mark.parametrize("dual_basis", [False, True])
@pytest.mark.parametrize("depth", DEPTHS)
def test_a_burst_of_16_depth_bytes_is_corrected(depth, dual_basis):
    rng = np.random.default_rng(depth)
    config = FrameConfig(frame_size=8192, depth=depth, dual_basis=dual_basis)
    data = os.urandom(2 * config.payload_per_frame)
    frames = encode_frames(config, 9, data)
    for trial in range(8):
        burst = 16 * depth
        damaged = []
        for datagram in frames:
            start = int(rng.integers(0, len(datagram) - burst + 1))
            frame = bytearray(datagram)
            frame[start : start + burst] = bytes(b ^ 0x5A for b in frame[start : start + burst])
            damaged.append(bytes(frame))
        assert payload_of(damaged, config.format) == data, trial


def test_without_interleaving_a_long_burst_is_dropped_not_delivered():
    config = FrameConfig(frame_size=4096, depth=1)
    (datagram,) = encode_frames(config, 1, os.urandom(1000))
    frame = bytearray(datagram)
    frame[40 : 40 + 16 * 8] = bytes(16 * 8)  # 128 bytes: fine at depth 8, fatal at depth 1
    with pytest.raises(FrameError, match="uncorrectable"):
        decode_frame(bytes(frame))


def test_17_or_more_errors_never_deliver_wrong_bytes():
    rng = np.random.default_rng(17)
    config = FrameConfig(frame_size=600, depth=1)
    delivered = dropped = 0
    for trial in range(150):
        data = os.urandom(int(rng.integers(1, config.payload_per_frame + 1)))
        (datagram,) = encode_frames(config, trial, data)
        layout = layout_of(datagram, 1)
        frame = bytearray(datagram)
        errors = int(rng.integers(rs.T + 1, layout.length // 2))
        symbols = rng.choice(layout.length, errors, replace=False)
        for offset in symbol_offset(layout, 0, 0, symbols):
            frame[offset] ^= int(rng.integers(1, 256))
        try:
            assert decode_frame(bytes(frame)).payload == data
            delivered += 1
        except FrameError as error:
            assert error.reason in {"uncorrectable", "bad_crc", "bad_header"}
            dropped += 1
    assert dropped > 140


def test_crc_catches_a_frame_that_decodes_to_another_codeword():
    config = FrameConfig(frame_size=2048, depth=2)
    (datagram,) = encode_frames(config, 5, b"A" * 500)

    def flip_payload(content: bytearray) -> None:
        content[100] ^= 1

    forged = recode(datagram, 2, flip_payload)  # RS-valid, but not what was sent
    with pytest.raises(FrameError, match="bad_crc"):
        decode_frame(forged)


def test_marker_and_format_survive_a_few_bit_errors():
    (datagram,) = encode_frames(FrameConfig(frame_size=2048, depth=3), 1, b"hello")
    frame = bytearray(datagram)
    frame[0] ^= 0x81  # 2 marker bits
    frame[3] ^= 0x03  # 2 more: 4 is the tolerance
    frame[4] ^= 0xFF  # 2 of the 5 format copies ruined
    frame[6] ^= 0xFF
    assert decode_frame(bytes(frame)).payload == b"hello"
    frame[1] ^= 0x01  # a fifth marker bit
    with pytest.raises(FrameError, match="bad_marker"):
        decode_frame(bytes(frame))


def test_a_frame_whose_prefix_a_burst_wiped_is_read_with_the_link_format():
    config = FrameConfig(frame_size=4096, depth=4, dual_basis=True)
    frames = encode_frames(config, 1, os.urandom(3 * config.payload_per_frame))
    wiped = bytes(64) + frames[0][64:]  # marker, format and the first 55 body bytes
    with pytest.raises(FrameError, match="bad_marker"):
        decode_frame(wiped)
    with pytest.raises(FrameError, match="bad_marker"):  # a wrong guess changes nothing
        decode_frame(wiped, fallback=fmt.FrameFormat(4, False))
    assert decode_frame(wiped, fallback=config.format).payload == decode_frame(frames[0]).payload
    # without a fallback, a batch lends the format most of its frames of that length have
    assert payload_of([wiped, *frames[1:]]) == payload_of(frames)


def test_a_dual_basis_frame_says_so():
    data = os.urandom(3000)
    frames = encode_frames(FrameConfig(dual_basis=True), 3, data)
    assert frames != encode_frames(FrameConfig(), 3, data)
    assert payload_of(frames) == data


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "truncated"),
        (fmt.MARKER + b"\x14" * 4, "truncated"),
        (b"\x00" * 600, "bad_marker"),
        (fmt.MARKER + b"\x34" * 5 + bytes(1020), "bad_format"),  # version 3
        (fmt.MARKER + b"\x17" * 5 + bytes(1020), "bad_format"),  # depth index 7
        (fmt.MARKER + b"\x13" * 5 + bytes(1021), "bad_length"),  # 1021 is not 4 codewords
        (fmt.MARKER + b"\x10" * 5 + bytes(40), "bad_length"),  # too short for a header
    ],
)
def test_bad_datagrams_get_a_clear_error(datagram, reason):
    with pytest.raises(FrameError) as caught:
        decode_frame(datagram)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(reason + ": ")


def test_an_all_zero_body_is_a_codeword_but_not_a_frame():
    with pytest.raises(FrameError, match="bad_crc"):
        decode_frame(fmt.MARKER + b"\x13" * 5 + bytes(4 * 255))


def forged_header(**fields) -> bytes:
    """A well-coded frame whose header says `fields` (CRC made to match)."""
    (datagram,) = encode_frames(FrameConfig(frame_size=2048, depth=1), 1, b"x" * 100)
    values = {"bundle_id": 1, "bundle_length": 100, "index": 0, "count": 1, "length": 100}
    values.update(fields)

    def edit(content: bytearray) -> None:
        struct.pack_into(">QQIII", content, 0, *values.values())
        if values["length"] <= len(content) - fmt.OVERHEAD:
            with_crc(content)

    return recode(datagram, 1, edit)


@pytest.mark.parametrize(
    "fields",
    [
        {"length": 10_000},  # more than the frame holds
        {"index": 1, "count": 1},
        {"count": 0},
        {"count": 2**32 - 1},  # more frames than the bundle has bytes
        {"bundle_length": 50},  # a frame longer than its bundle
    ],
)
def test_absurd_headers_are_rejected(fields):
    with pytest.raises(FrameError, match="bad_header"):
        decode_frame(forged_header(**fields))


def test_batch_keeps_order_and_isolates_bad_datagrams():
    config = FrameConfig(frame_size=2048, depth=4)
    good = encode_frames(config, 1, os.urandom(5000))
    other = encode_frames(FrameConfig(frame_size=1500, depth=5, dual_basis=True), 2, b"y" * 900)
    batch = [good[0], b"junk", other[0], good[1], b"", good[2]]
    results = decode_frames(batch)
    assert [type(r).__name__ for r in results] == [
        "DecodedFrame", "FrameError", "DecodedFrame", "DecodedFrame", "FrameError",
        "DecodedFrame",
    ]  # fmt: skip
    assert [r.index for r in results if not isinstance(r, FrameError)] == [0, 0, 1, 2]
    assert results[2].payload == b"y" * 900
