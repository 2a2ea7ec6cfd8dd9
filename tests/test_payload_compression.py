"""Payload compression: the block format, skipping, and bounded decompression."""

import os
import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.bundle import cbor
from dtn.payload import Algorithm, CompressionError, CompressionInfo, Compressor, PayloadReason
from dtn.payload.compression import ZSTD_MAGIC

TELEMETRY = b"".join(
    b'{"t":%d,"temp_c":-41.%d,"mode":"nominal"}\n' % (i, i % 10) for i in range(2000)
)


def test_block_data_roundtrip_and_layout():
    info = CompressionInfo(Algorithm.ZSTD, 70_000)
    assert info.encode() == bytes.fromhex("82011a00011170")
    assert CompressionInfo.decode(info.encode()) == info


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("8301 01 01", PayloadReason.MALFORMED_COMPRESSION_BLOCK),
        ("82 01", PayloadReason.MALFORMED_COMPRESSION_BLOCK),
        ("82 01 01 00", PayloadReason.MALFORMED_COMPRESSION_BLOCK),
        ("82 01 20", PayloadReason.MALFORMED_COMPRESSION_BLOCK),
        ("a0", PayloadReason.MALFORMED_COMPRESSION_BLOCK),
        ("82 07 01", PayloadReason.UNSUPPORTED_COMPRESSION),
    ],
)
def test_malformed_or_unknown_blocks(data, reason):
    with pytest.raises(CompressionError) as caught:
        CompressionInfo.decode(bytes.fromhex(data.replace(" ", "")))
    assert caught.value.reason == reason


@settings(max_examples=300)
@given(st.binary(max_size=20))
def test_block_decoder_refuses_garbage_with_compression_errors_only(data):
    try:
        info = CompressionInfo.decode(data)
    except CompressionError:
        return
    assert info.encode() == data


def test_compresses_when_it_pays_and_stores_otherwise():
    compressor = Compressor()
    frame = compressor.compress(TELEMETRY)
    assert frame[:4] == ZSTD_MAGIC and len(frame) < len(TELEMETRY) // 5
    info = CompressionInfo(Algorithm.ZSTD, len(TELEMETRY))
    assert compressor.decompress(frame, info) == TELEMETRY
    noise = os.urandom(5000)
    assert compressor.compress(noise) is None
    assert compressor.compress(b"") is None
    assert compressor.decompress(noise, CompressionInfo(Algorithm.STORED, 5000)) == noise


def test_data_that_looks_like_a_zstd_frame_is_always_compressed():
    """So a stored payload never starts with the magic, and the block cannot lie about it."""
    already = zstandard.ZstdCompressor().compress(os.urandom(3000))
    frame = Compressor().compress(already)
    assert frame is not None and len(frame) > len(already)
    assert Compressor().decompress(frame, CompressionInfo(Algorithm.ZSTD, len(already))) == already


@pytest.mark.parametrize(
    ("payload", "info", "message"),
    [
        (b"plain data", CompressionInfo(Algorithm.STORED, 9), "payload is 10 bytes"),
        (ZSTD_MAGIC + b"pretend", CompressionInfo(Algorithm.STORED, 11), "Zstandard frame"),
        (b"plain data", CompressionInfo(Algorithm.ZSTD, 10), "magic number"),
        (ZSTD_MAGIC + b"\xff", CompressionInfo(Algorithm.ZSTD, 10), "frame header is broken"),
    ],
)
def test_inconsistent_blocks_are_refused(payload, info, message):
    with pytest.raises(CompressionError, match=message) as caught:
        Compressor().decompress(payload, info)
    assert caught.value.reason == PayloadReason.DECOMPRESSION_FAILED


def test_frame_must_hold_exactly_what_the_block_declares():
    compressor = Compressor()
    frame = compressor.compress(TELEMETRY)
    for declared in (len(TELEMETRY) - 1, len(TELEMETRY) + 1):
        with pytest.raises(CompressionError, match="frame holds"):
            compressor.decompress(frame, CompressionInfo(Algorithm.ZSTD, declared))
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(TELEMETRY)
    with pytest.raises(CompressionError, match=r"\(-1: unknown\)"):
        compressor.decompress(unsized, CompressionInfo(Algorithm.ZSTD, len(TELEMETRY)))
    with pytest.raises(CompressionError, match="does not decompress"):
        compressor.decompress(frame + b"tail", CompressionInfo(Algorithm.ZSTD, len(TELEMETRY)))
    with pytest.raises(CompressionError, match="does not decompress"):
        compressor.decompress(frame[:-5], CompressionInfo(Algorithm.ZSTD, len(TELEMETRY)))


def test_decompression_bomb_is_refused_in_bounded_memory():
    writer = zstandard.ZstdCompressor(level=1).compressobj(size=256 << 20)
    zeros = bytes(1 << 20)
    bomb = b"".join([*(writer.compress(zeros) for _ in range(256)), writer.flush()])  # 256 MiB
    assert len(bomb) < 64 << 10
    compressor = Compressor(max_payload=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="more than this node accepts") as caught:
            compressor.decompress(bomb, CompressionInfo(Algorithm.ZSTD, 256 << 20))
        assert caught.value.reason == PayloadReason.TOO_LARGE
        with pytest.raises(CompressionError, match="frame holds 268435456 bytes"):
            compressor.decompress(bomb, CompressionInfo(Algorithm.ZSTD, 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def answer(call):
    try:
        return call()
    except CompressionError as exc:
        return (exc.reason, str(exc))


@settings(max_examples=300)
@given(
    data=st.one_of(st.binary(max_size=300), st.just(b"abc" * 200)),
    form=st.sampled_from(["as is", "frame", "unsized frame", "frame+tail", "cut frame"]),
    algorithm=st.sampled_from([0, 1, 2]),
    delta=st.sampled_from([0, 1, -1, 10_000]),
    garbage=st.one_of(st.none(), st.binary(max_size=8)),
)
def test_restore_answers_as_decompress(data, form, algorithm, delta, garbage):
    """restore's shortcut for the blocks pack() writes changes nothing: same data, or the same
    refusal with the same message, as decoding the block and decompressing."""
    compressor = Compressor(max_payload=400)  # "abc" * 200 is more
    frame = zstandard.ZstdCompressor(write_content_size=form != "unsized frame").compress(data)
    payload = {"as is": data, "frame+tail": frame + b"\x00", "cut frame": frame[:-1]}.get(
        form, frame
    )
    length = max(len(data) + delta, 0)
    block = garbage if garbage is not None else b"\x82" + bytes([algorithm]) + cbor.uint(length)

    def decompress():
        return compressor.decompress(payload, CompressionInfo.decode(block))

    assert answer(lambda: compressor.restore(payload, block)) == answer(decompress)
