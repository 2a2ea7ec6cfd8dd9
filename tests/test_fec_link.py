"""FrameEncoder / FrameDecoder: reassembly, expiry, limits and counters, on virtual time."""

import os
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.fec import FrameConfig, FrameDecoder, FrameEncoder
from dtn.fec import frame as fmt

CONFIG = FrameConfig(frame_size=2048, depth=4)


def flip_bits(datagrams: list[bytes], ber: float, rng: np.random.Generator) -> list[bytes]:
    out = []
    for datagram in datagrams:
        bits = np.unpackbits(np.frombuffer(datagram, dtype=np.uint8))
        bits ^= (rng.random(bits.size) < ber).astype(np.uint8)
        out.append(np.packbits(bits).tobytes())
    return out


def test_bundle_is_delivered_once_all_frames_arrive_in_any_order():
    data = os.urandom(10_000)
    frames = FrameEncoder(CONFIG).encode(42, data)
    random.Random(1).shuffle(frames)
    decoder = FrameDecoder()
    delivered = [bundle for frame in frames for bundle in decoder.receive(frame, now=5.0)]
    assert delivered == [data]
    assert decoder.pending_bundles == 0
    assert decoder.counters.frames_clean == len(frames)
    assert decoder.counters.bundles_completed == 1


def test_receive_many_interleaves_bundles():
    encoder = FrameEncoder(CONFIG)
    bundles = {i: os.urandom(3000 * i) for i in range(1, 6)}
    frames = [f for i, data in bundles.items() for f in encoder.encode(i, data)]
    random.Random(2).shuffle(frames)
    decoder = FrameDecoder()
    delivered = decoder.receive_many(frames[:10], now=0.0) + decoder.receive_many(frames[10:], 1.0)
    assert sorted(delivered) == sorted(bundles.values())


def test_duplicate_frames_never_deliver_twice():
    frames = FrameEncoder(CONFIG).encode(1, b"once")
    decoder = FrameDecoder(reassembly_timeout=10.0)
    assert decoder.receive(frames[0], now=0.0) == [b"once"]
    assert decoder.receive(frames[0], now=1.0) == []
    assert decoder.counters.frames_dropped["duplicate"] == 1
    decoder.expire(now=11.0)  # after the timeout the id may be used again
    assert decoder.receive(frames[0], now=12.0) == [b"once"]


def test_partial_bundle_expires_after_idle_timeout():
    frames = FrameEncoder(CONFIG).encode(9, os.urandom(5000))
    decoder = FrameDecoder(reassembly_timeout=60.0)
    decoder.receive(frames[0], now=100.0)
    decoder.receive(frames[1], now=130.0)  # a new frame restarts the clock
    assert decoder.next_deadline() == 190.0
    assert decoder.expire(now=189.0) == 0
    assert decoder.expire(now=190.0) == 1
    assert decoder.next_deadline() is None
    assert decoder.counters.bundles_dropped["expired"] == 1
    assert decoder.receive(frames[2], now=191.0) == []  # a lone late frame starts over


def test_reused_id_with_other_shape_replaces_the_partial():
    encoder = FrameEncoder(CONFIG)
    old = encoder.encode(5, os.urandom(5000))
    new_data = os.urandom(9000)
    new = encoder.encode(5, new_data)
    decoder = FrameDecoder()
    decoder.receive(old[0], now=0.0)
    assert decoder.receive_many(new, now=1.0) == [new_data]
    assert decoder.counters.bundles_dropped["conflict"] == 1


def test_limits_bound_what_is_held():
    encoder = FrameEncoder(CONFIG)
    decoder = FrameDecoder(max_bundle_bytes=4000, max_pending_bytes=8000, max_pending_bundles=2)
    too_large = encoder.encode(1, os.urandom(5000))
    assert decoder.receive_many(too_large, now=0.0) == []
    assert decoder.counters.frames_dropped["too_large"] == len(too_large)
    for bundle_id in (2, 3, 4):  # each leaves one frame of a multi-frame bundle pending
        decoder.receive(encoder.encode(bundle_id, os.urandom(3000))[0], now=float(bundle_id))
    assert decoder.pending_bundles == 2
    assert decoder.counters.bundles_dropped["evicted"] == 1


def test_many_tiny_frames_count_against_the_byte_limit():
    encoder = FrameEncoder(FrameConfig(frame_size=200, depth=1))
    frames = encoder.encode(1, os.urandom(100_000))  # 788 frames of <= 127 payload bytes
    decoder = FrameDecoder(max_bundle_bytes=150_000, max_pending_bytes=150_000)
    decoder.receive_many(frames[:-1], now=0.0)
    # the payloads alone (< 100 kB) would fit, not with the bookkeeping of 787 held frames
    assert decoder.counters.bundles_dropped["evicted"] == 1


def test_counters_name_every_drop():
    encoder = FrameEncoder(CONFIG)
    frames = encoder.encode(1, os.urandom(1500))
    assert len(frames) == 2
    damaged = bytearray(frames[0])
    damaged[100] ^= 0xFF
    damaged[200] ^= 0x01
    ruined = bytearray(frames[1])
    ruined[fmt.PREFIX_LEN : fmt.PREFIX_LEN + 500] = bytes(500)
    decoder = FrameDecoder()
    decoder.receive_many([bytes(damaged), bytes(ruined), b"short", frames[1]], now=0.0)
    counters = decoder.counters
    assert counters.frames_received == 4
    assert counters.frames_corrected == 1
    assert counters.symbols_corrected == 2
    assert counters.frames_clean == 1
    assert counters.frames_dropped == {"uncorrectable": 1, "truncated": 1}
    assert counters.bundles_completed == 1


def test_decoder_remembers_the_link_format_for_wiped_prefixes():
    frames = FrameEncoder(CONFIG).encode(3, os.urandom(1500))
    decoder = FrameDecoder()
    assert decoder.receive(frames[0], now=0.0) == []
    wiped = bytes(9) + frames[1][9:]
    assert len(decoder.receive(wiped, now=0.0)) == 1
    assert not decoder.counters.frames_dropped


def test_zero_corrupted_bundles_at_a_terrible_bit_error_rate():
    rng = np.random.default_rng(3)
    encoder = FrameEncoder(FrameConfig(frame_size=1200, depth=1))
    bundles = {i: os.urandom(2000) for i in range(40)}
    frames = [f for i, data in bundles.items() for f in encoder.encode(i, data)]
    decoder = FrameDecoder()
    delivered = decoder.receive_many(flip_bits(frames, 1.2e-2, rng), now=0.0)
    assert set(delivered) <= set(bundles.values())  # only ever the true bytes
    assert decoder.counters.frames_dropped["uncorrectable"] > 0  # the rate really hurt
    assert decoder.counters.frames_corrected > 0


@settings(max_examples=30, deadline=None)
@given(
    data=st.binary(max_size=6000),
    depth=st.sampled_from(fmt.DEPTHS),
    dual_basis=st.booleans(),
    frame_size=st.integers(min_value=700, max_value=5000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_any_bundle_survives_a_moderate_bit_error_rate(data, depth, dual_basis, frame_size, seed):
    config = FrameConfig(frame_size=frame_size, depth=depth, dual_basis=dual_basis)
    frames = FrameEncoder(config).encode(seed, data)
    decoder = FrameDecoder()
    received = flip_bits(frames, 1e-3, np.random.default_rng(seed))
    assert decoder.receive_many(received, now=0.0) == [data]
