"""Trained zstd dictionaries: algorithm 2 of the compression block, round trips through the
Compressor and the pipeline, refusals, dictionary files and `dtn dict`."""

import os
import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_helpers import receive, send

from dtn.bundle import EID, Bundle, cbor
from dtn.cli import main
from dtn.payload import (
    COMPRESSION_BLOCK_TYPE,
    Algorithm,
    CompressionError,
    CompressionInfo,
    Compressor,
    PayloadPipeline,
    PayloadReason,
    PayloadRejected,
)
from dtn.payload.dictionaries import (
    DICTIONARY_MAGIC,
    MAX_DICTIONARY_BYTES,
    DictionaryError,
    dictionary_id,
    load_dictionary,
    save_dictionary,
    train_dictionary,
)
from dtn.security import Keyring, SecurityPolicy
from tools.bench.payload import telemetry

EARTH, MARS = EID.parse("ipn:1.0"), EID.parse("ipn:2.0")
KEYS = Keyring({"link": bytes(range(32))})
BCB_RULE = {"bcb": "A256GCM", "key": "link"}


def records(count: int, seed: int) -> list[bytes]:
    """`count` whole JSON lines of telemetry (about 220 bytes each)."""
    return telemetry(count * 400, seed).splitlines(keepends=True)[:count]


TRAINING, FRESH = records(2000, seed=1), records(50, seed=2)  # FRESH: not trained on
LARGE = telemetry(64 << 10, seed=3)


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    return train_dictionary(TRAINING)


@pytest.fixture(scope="module")
def other() -> bytes:
    """Another dictionary, trained on other records."""
    return train_dictionary(records(500, seed=4), size=4096)


def answer(call):
    try:
        return call()
    except CompressionError as exc:
        return (exc.reason, str(exc))


def refusal(call) -> CompressionError:
    with pytest.raises(CompressionError) as caught:
        call()
    return caught.value


# The block


def test_block_data_layouts_are_byte_exact(dictionary):
    ident = dictionary_id(dictionary)
    plain, trained = Compressor(), Compressor(dictionary=dictionary)
    assert plain.block_data(True, 300) == bytes.fromhex("820119012c")
    assert plain.block_data(False, 300) == bytes.fromhex("820019012c")
    assert trained.block_data(False, 300) == bytes.fromhex("820019012c")
    layout = bytes.fromhex("830219012c1a") + ident.to_bytes(4, "big")
    assert trained.block_data(True, 300) == layout
    info = CompressionInfo(Algorithm.ZSTD_DICTIONARY, 300, ident)
    assert info.encode() == layout and CompressionInfo.decode(layout) == info
    assert CompressionInfo(Algorithm.ZSTD_DICTIONARY, 5, 7).encode() == bytes.fromhex("83020507")
    record = FRESH[0]
    frame, block = trained.pack(record)
    assert block == trained.block_data(True, len(record))
    assert zstandard.get_frame_parameters(frame).dict_id == ident == trained.dictionary_id


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        ("82 02 05", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "algorithm 2 takes 3 items"),
        ("83 01 05 07", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "algorithm 1 takes 2 items"),
        ("83 00 05 07", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "algorithm 0 takes 2 items"),
        ("83 02 05 00", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "dictionary id 0 is not"),
        ("83 02 05 1b 0000000100000000", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "4294967296"),
        ("83 02 05 41 07", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "must be an unsigned"),
        ("83 02 05", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "more than bytes remain"),
        ("83 02 05 1a 0000", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "past the end"),
        ("83 02 05 07 00", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "1 bytes after"),
        ("84 02 05 07 07", PayloadReason.MALFORMED_COMPRESSION_BLOCK, "found 4 items"),
        ("83 09 05 07", PayloadReason.UNSUPPORTED_COMPRESSION, "algorithm 9 is unknown"),
    ],
)
def test_malformed_three_item_blocks(data, reason, message):
    error = refusal(lambda: CompressionInfo.decode(bytes.fromhex(data.replace(" ", ""))))
    assert error.reason == reason and message in str(error)


@settings(max_examples=300)
@given(st.binary(max_size=12))
def test_garbage_after_a_three_item_head_gets_compression_errors_only(tail):
    data = b"\x83\x02" + tail
    compressor = Compressor()
    try:
        info = CompressionInfo.decode(data)
    except CompressionError:
        return
    assert info.encode() == data
    error = refusal(lambda: compressor.restore(ZSTD_FRAME_OF_NOTHING, data))
    assert error.reason in (PayloadReason.UNSUPPORTED_COMPRESSION, PayloadReason.TOO_LARGE)


ZSTD_FRAME_OF_NOTHING = zstandard.ZstdCompressor().compress(b"")


# The Compressor


def test_compressor_round_trips_small_records_and_a_large_payload(dictionary):
    plain, trained = Compressor(), Compressor(dictionary=dictionary)
    receiver = Compressor(dictionaries=[dictionary])
    for data in (*FRESH, b"".join(FRESH[:4]), LARGE):
        frame, block = trained.pack(data)
        assert block == trained.block_data(True, len(data))
        assert receiver.restore(frame, block) == data
        info = CompressionInfo.decode(block)
        assert receiver.decompress(frame, info) == data
    # what a dictionary is for: a record alone, trained on records like it
    with_dictionary = sum(len(trained.compress(record)) for record in FRESH)
    without = sum(len(plain.compress(record) or record) for record in FRESH)
    assert with_dictionary < 0.6 * without


def test_stored_rule_is_unchanged_with_a_dictionary(dictionary):
    trained = Compressor(dictionary=dictionary)
    noise = os.urandom(300)
    assert trained.pack(noise) == (None, bytes.fromhex("820019012c"))
    looks_like_a_frame = ZSTD_FRAME_OF_NOTHING + os.urandom(40)
    frame, block = trained.pack(looks_like_a_frame)
    assert frame is not None and CompressionInfo.decode(block).dictionary_id is not None
    assert Compressor(dictionaries=[dictionary]).restore(frame, block) == looks_like_a_frame


def test_a_receiver_without_the_dictionary_names_it(dictionary, other):
    frame, block = Compressor(dictionary=dictionary).pack(FRESH[0])
    for receiver in (Compressor(), Compressor(dictionaries=[other])):
        error = refusal(lambda receiver=receiver: receiver.restore(frame, block))
        assert error.reason == PayloadReason.UNSUPPORTED_COMPRESSION
        assert f"payload needs zstd dictionary {dictionary_id(dictionary)}," in str(error)


def test_block_and_frame_must_agree(dictionary, other):
    ident, other_ident = dictionary_id(dictionary), dictionary_id(other)
    receiver = Compressor(dictionaries=[dictionary, other])
    record = FRESH[1]
    frame = Compressor(dictionary=dictionary).compress(record)
    foreign = Compressor(dictionary=other).compress(record)
    unnamed = zstandard.ZstdCompressor(
        dict_data=zstandard.ZstdCompressionDict(dictionary), write_dict_id=False
    ).compress(record)
    plain = Compressor().compress(b"".join(FRESH))
    cases = [
        (frame, [2, len(record), other_ident], "names dictionary"),
        (foreign, [2, len(record), ident], "names dictionary"),
        (unnamed, [2, len(record), ident], "names dictionary 0 (0: none)"),
        (plain, [2, len(b"".join(FRESH)), ident], "names dictionary 0 (0: none)"),
        (frame, [2, len(record) + 1, ident], "frame holds"),
        (frame, [2, len(record) - 1, ident], "frame holds"),
        (frame, [1, len(record)], "does not decompress"),  # a frame that needs a dictionary
        (frame[:-3], [2, len(record), ident], "does not decompress"),
        (frame + b"\x00", [2, len(record), ident], "does not decompress"),
        (frame[:5], [2, len(record), ident], "frame header is broken"),
        (record, [2, len(record), ident], "magic number"),
        (frame, [0, len(frame)], "'stored'"),
    ]
    for payload, fields, message in cases:
        block = bytes([0x80 + len(fields)]) + b"".join(map(cbor.uint, fields))
        error = refusal(lambda payload=payload, block=block: receiver.restore(payload, block))
        assert error.reason == PayloadReason.DECOMPRESSION_FAILED, (fields, str(error))
        assert message in str(error)


def test_dictionary_bomb_is_refused_from_its_header(dictionary):
    parsed = zstandard.ZstdCompressionDict(dictionary)
    writer = zstandard.ZstdCompressor(level=1, dict_data=parsed).compressobj(size=256 << 20)
    zeros = bytes(1 << 20)
    bomb = b"".join([*(writer.compress(zeros) for _ in range(256)), writer.flush()])
    assert len(bomb) < 64 << 10
    ident = dictionary_id(dictionary)
    receiver = Compressor(max_payload=1 << 20, dictionaries=[dictionary])
    tracemalloc.start()
    try:
        error = refusal(lambda: receiver.restore(bomb, compression(2, 256 << 20, ident)))
        assert error.reason == PayloadReason.TOO_LARGE
        error = refusal(lambda: receiver.restore(bomb, compression(2, 1000, ident)))
        assert "frame holds 268435456 bytes" in str(error)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def compression(*fields: int) -> bytes:
    return bytes([0x80 + len(fields)]) + b"".join(map(cbor.uint, fields))


@settings(max_examples=300)
@given(
    data=st.one_of(st.binary(max_size=300), st.sampled_from(FRESH)),
    form=st.sampled_from(["as is", "frame", "foreign frame", "plain frame", "cut frame"]),
    algorithm=st.sampled_from([0, 1, 2]),
    named=st.sampled_from(["ours", "other", "unknown"]),
    delta=st.sampled_from([0, 1, -1, 10_000]),
)
def test_restore_answers_as_decompress(dictionary, other, data, form, algorithm, named, delta):
    """For blocks and frames with dictionaries as well, restore changes nothing."""
    receiver = Compressor(max_payload=400, dictionaries=[dictionary, other])
    frame = Compressor(dictionary=dictionary).zstd(data)
    payload = {
        "as is": data,
        "foreign frame": Compressor(dictionary=other).zstd(data),
        "plain frame": Compressor().zstd(data),
        "cut frame": frame[:-1],
    }.get(form, frame)
    ident = {"ours": dictionary_id(dictionary), "other": dictionary_id(other), "unknown": 77}
    fields = [algorithm, max(len(data) + delta, 0)] + ([ident[named]] if algorithm == 2 else [])
    block = compression(*fields)

    def decompress():
        return receiver.decompress(payload, CompressionInfo.decode(block))

    assert answer(lambda: receiver.restore(payload, block)) == answer(decompress)


def test_bad_dictionaries_are_refused_when_configured(dictionary):
    broken = dictionary[:8] + bytes(200) + dictionary[208:]
    for bad, message in (
        (b"not a dictionary", "magic number"),
        (DICTIONARY_MAGIC + bytes(4) + dictionary[8:], "id is 0"),
        (broken, "entropy tables are broken"),
        (dictionary + bytes(MAX_DICTIONARY_BYTES), "more than a dictionary may hold"),
    ):
        with pytest.raises(DictionaryError, match=message):
            Compressor(dictionary=bad)
        with pytest.raises(DictionaryError, match=message):
            Compressor(dictionaries=[bad])
    same_id = dictionary[:-1] + bytes([dictionary[-1] ^ 1])
    with pytest.raises(DictionaryError, match="two different dictionaries have the id"):
        Compressor(dictionary=dictionary, dictionaries=[same_id])
    both = Compressor(dictionary=dictionary, dictionaries=[dictionary])
    assert both.dictionary_id == dictionary_id(dictionary)


# The pipeline


def pair(dictionary: bytes, dictionaries: list[bytes], rule: dict | None = BCB_RULE):
    """(Earth compressing with `dictionary`, sending to ipn:2.*; Mars with `dictionaries`)."""
    earth = [{"destination": "ipn:2.*", **rule}] if rule else []
    mars = [{"source": "ipn:1.*", **rule}] if rule else []
    return (
        PayloadPipeline(
            SecurityPolicy.from_config({"rule": earth}), KEYS, EARTH, dictionary=dictionary
        ),
        PayloadPipeline(
            SecurityPolicy.from_config({"rule": mars}), KEYS, MARS, dictionaries=dictionaries
        ),
    )


@pytest.mark.parametrize("rule", [BCB_RULE, None], ids=["bcb", "no-rule"])
def test_pipeline_round_trips_records_and_a_large_payload(fast_path, dictionary, rule):
    earth, mars = pair(dictionary, [dictionary], rule)
    expected_block = {
        data: compression(2, len(data), dictionary_id(dictionary)) for data in (*FRESH, LARGE)
    }
    # the first bundle teaches Mars the sender; the later ones take the known-sender path
    for sequence, data in enumerate((*FRESH, LARGE, *FRESH[:3])):
        wire = send(earth, data, sequence)
        (block,) = [b for b in Bundle.decode(wire).blocks if b.block_type == COMPRESSION_BLOCK_TYPE]
        assert block.data == expected_block[data]
        assert receive(mars, wire) == data
    assert earth.counts["compressed"] == len(FRESH) + 4 and mars.counts["delivered"] == 54


def test_pipeline_receiver_without_the_dictionary_rejects(fast_path, dictionary, other):
    earth, mars = pair(dictionary, [other])
    for sequence in range(2):
        with pytest.raises(PayloadRejected) as caught:
            receive(mars, send(earth, FRESH[sequence], sequence))
        assert caught.value.reason == PayloadReason.UNSUPPORTED_COMPRESSION
        assert str(dictionary_id(dictionary)) in str(caught.value)
    assert mars.rejections[PayloadReason.UNSUPPORTED_COMPRESSION] == 2


@settings(max_examples=100)
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.sampled_from(FRESH),
        st.lists(st.sampled_from(FRESH), max_size=20).map(b"".join),
    )
)
def test_deliver_of_send_is_the_data(fast_path, dictionary, data):
    earth, mars = pair(dictionary, [dictionary])
    assert receive(mars, send(earth, data)) == data
    assert receive(mars, send(earth, data, 1)) == data  # the known sender's path


# Dictionary files and `dtn dict`


def test_training_needs_enough_samples():
    with pytest.raises(ValueError, match="too few samples"):
        train_dictionary(FRESH[:9])
    with pytest.raises(DictionaryError, match="cannot train a dictionary on 10 samples"):
        train_dictionary([b""] * 10)
    with pytest.raises(DictionaryError, match="dictionary size 100 is not in"):
        train_dictionary(FRESH, size=100)


def test_save_and_load(tmp_path, dictionary):
    path = tmp_path / "telemetry.zdict"
    save_dictionary(path, dictionary)
    assert load_dictionary(path) == dictionary
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "big").write_bytes(dictionary + bytes(MAX_DICTIONARY_BYTES))
    (tmp_path / "text").write_bytes(b"{}\n")
    for name, message in (
        ("big", "more than a dictionary may hold"),
        ("text", "not a Zstandard dictionary"),
        ("missing", "No such file"),
        (".", "Is a directory"),
    ):
        with pytest.raises(DictionaryError, match=message):
            load_dictionary(tmp_path / name)
    with pytest.raises(DictionaryError, match="magic number"):
        save_dictionary(tmp_path / "bad", b"bad")
    assert not (tmp_path / "bad").exists()


def test_cli_train_and_info(tmp_path, capsys):
    lines = tmp_path / "records.jsonl"
    lines.write_bytes(b"".join(TRAINING[:1000]) + b"\n\n")
    out = tmp_path / "telemetry.zdict"
    assert main(["dict", "train", str(out), str(lines), "--lines", "--size", "8192"]) == 0
    data = load_dictionary(out)
    ident = dictionary_id(data)
    assert capsys.readouterr().out == (
        f"wrote dictionary {ident} ({len(data)} bytes, trained on 1000 samples) to {out}\n"
    )
    assert len(data) <= 8192
    assert main(["dict", "info", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: zstd dictionary {ident}, {len(data)} bytes\n"
    samples = []
    for index, record in enumerate(TRAINING[:300]):
        samples.append(tmp_path / f"sample{index}.json")
        samples[-1].write_bytes(record)
    assert main(["dict", "train", str(tmp_path / "per-file"), *map(str, samples)]) == 0
    assert "trained on 300 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dict", "info", "{tmp}/records.jsonl"], "not a Zstandard dictionary"),
        (["dict", "info", "{tmp}/missing"], "cannot read dictionary file"),
        (["dict", "train", "{tmp}/out", "{tmp}/records.jsonl"], "too few samples"),
        (["dict", "train", "{tmp}/out", "{tmp}/missing", "--lines"], "cannot read sample"),
        (["dict", "train", "{tmp}/nodir/out", "{tmp}/records.jsonl", "--lines"], "cannot write"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "records.jsonl").write_bytes(b"".join(TRAINING[:200]))
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith(f"dtn dict {argv[1]}: ")
