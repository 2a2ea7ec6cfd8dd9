"""Throughput of the payload pipeline beside direct zstandard + AESGCM calls, in the same run.

send:    PayloadPipeline.send(data) -> Bundle (compress, bundle, BCB-AES-GCM A256GCM)
deliver: PayloadPipeline.deliver(bundle) -> data (decrypt, policy checks, decompress)
direct:  ZstdCompressor.compress + AESGCM.encrypt, and AESGCM.decrypt + ZstdDecompressor
         .decompress, on the same data, reusing the contexts as the pipeline does.
"+wire" adds Bundle.encode after send and Bundle.decode before deliver (the node's framing).
Then small telemetry records sent one per bundle, without and with a trained zstd dictionary:
mean bundle size on the wire, compressed payload / record, and records/s of send and deliver.

MB/s counts application bytes. Each figure is the best of several timed batches, the four
measurements of a row interleaved so machine load hits them alike.
Run: python -m tools.bench.payload [--bib] [--level N] [--rounds N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtn.bundle import EID, Bundle
from dtn.payload import PayloadPipeline
from dtn.payload.dictionaries import DEFAULT_DICTIONARY_SIZE, train_dictionary
from dtn.security import Keyring, SecurityPolicy
from tools.bench.timing import best_rates

SIZES = (64 * 1024, 1024 * 1024)
RECORD_LINES = (1, 5, 19)  # telemetry lines per record: about 220 B, 1.1 KiB, 4.1 KiB
TRAINING_RECORDS, TEST_RECORDS = 2000, 500
SOURCE, DESTINATION = EID.parse("ipn:1.1"), EID.parse("ipn:2.1")  # parsed once, as by a node
CREATION_TIME = 817_000_000_000


def telemetry(size: int, seed: int = 7) -> bytes:
    """JSON lines of rover housekeeping telemetry, `size` bytes."""
    rng = random.Random(seed)
    lines, total, stamp = [], 0, CREATION_TIME
    while total < size:
        stamp += rng.randint(900, 1100)
        line = (
            json.dumps(
                {
                    "t": stamp,
                    "seq": len(lines),
                    "node": "ipn:2.1",
                    "mode": rng.choice(("nominal", "nominal", "nominal", "science", "safe")),
                    "bus_v": round(rng.gauss(28.0, 0.15), 3),
                    "batt_soc": round(rng.uniform(40, 95), 1),
                    "temp_c": [round(rng.gauss(-40, 6), 2) for _ in range(4)],
                    "wheel_rpm": [rng.randint(0, 3000) for _ in range(6)],
                    "imu": {
                        "ax": round(rng.gauss(0, 0.02), 4),
                        "ay": round(rng.gauss(0, 0.02), 4),
                        "az": round(rng.gauss(-3.71, 0.02), 4),
                    },
                },
                separators=(",", ":"),
            )
            + "\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def records(lines: int, count: int, seed: int) -> list[bytes]:
    """`count` records of `lines` whole telemetry lines each."""
    text = telemetry(count * lines * 300, seed).splitlines(keepends=True)
    records = [b"".join(text[start : start + lines]) for start in range(0, len(text), lines)]
    assert len(records) > count, "telemetry() made fewer lines than asked for"
    return records[:count]


def pipelines(
    bib: bool, level: int, dictionary: bytes | None = None
) -> tuple[PayloadPipeline, PayloadPipeline]:
    """(sender, receiver) sharing keys, the rule covering both directions; the sender
    compresses with `dictionary`, the receiver has it."""
    rule = {"destination": "ipn:2.*", "source": "ipn:1.*", "bcb": "A256GCM", "key": "link"}
    if bib:
        rule.update(bib="HMAC-SHA-256", bib_key="sign")
    policy = SecurityPolicy.from_config({"rule": [rule]})
    keys = Keyring({"link": os.urandom(32), "sign": os.urandom(32)})
    sender = PayloadPipeline(
        policy, keys, EID.parse("ipn:1.0"), compression_level=level, dictionary=dictionary
    )
    receiver = PayloadPipeline(
        policy,
        keys,
        EID.parse("ipn:2.0"),
        compression_level=level,
        dictionaries=() if dictionary is None else (dictionary,),
    )
    return sender, receiver


def measure(
    name: str,
    data: bytes,
    sender: PayloadPipeline,
    receiver: PayloadPipeline,
    level: int,
    rounds: int,
) -> None:
    compressor = zstandard.ZstdCompressor(level=level)
    decompressor = zstandard.ZstdDecompressor()
    aead = AESGCM(os.urandom(32))
    aad = bytes(40)  # about a primary block's worth of authenticated header
    iv = os.urandom(12)
    sealed = aead.encrypt(iv, compressor.compress(data), aad)
    wire = sender.send(data, SOURCE, DESTINATION, creation_time=CREATION_TIME).encode()
    received = Bundle.decode(wire)
    assert receiver.deliver(received) == data

    def direct_send() -> bytes:
        return aead.encrypt(os.urandom(12), compressor.compress(data), aad)

    def direct_deliver() -> bytes:
        return decompressor.decompress(aead.decrypt(iv, sealed, aad))

    actions = [
        direct_send,
        lambda: sender.send(data, SOURCE, DESTINATION, creation_time=CREATION_TIME),
        lambda: sender.send(data, SOURCE, DESTINATION, creation_time=CREATION_TIME).encode(),
        direct_deliver,
        lambda: receiver.deliver(received),
        lambda: receiver.deliver(Bundle.decode(wire)),
    ]
    rates = best_rates(actions, rounds)
    for direction, (direct, pipeline, wired) in (("send", rates[:3]), ("deliver", rates[3:])):
        print(
            f"{name:<10}{len(data) // 1024:>5} KiB {len(wire) / len(data):6.3f}  {direction:<8}"
            f"{pipeline * len(data) / 1e6:8.0f} {wired * len(data) / 1e6:8.0f} "
            f"{direct * len(data) / 1e6:8.0f}  {pipeline / direct:5.2f} {wired / direct:6.2f}"
            f"  {(1 / pipeline - 1 / direct) * 1e6:8.1f}"
        )


def measure_records(lines: int, bib: bool, level: int, rounds: int) -> None:
    """One row of the small-records table: records of `lines` lines, without and with a
    dictionary trained on other records of the same kind."""
    dictionary = train_dictionary(records(lines, TRAINING_RECORDS, seed=11))
    sent = records(lines, TEST_RECORDS, seed=12)
    sizes, actions = [], []
    for sender, receiver in (pipelines(bib, level), pipelines(bib, level, dictionary)):
        bundles = [
            sender.send(data, SOURCE, DESTINATION, creation_time=CREATION_TIME) for data in sent
        ]
        wires = [bundle.encode() for bundle in bundles]
        assert [receiver.deliver(Bundle.decode(wire)) for wire in wires] == sent
        sizes.append(
            (
                sum(map(len, wires)) / len(sent),
                sum(len(bundle.payload_block.data) for bundle in bundles) / sum(map(len, sent)),
            )
        )
        next_record, next_bundle = itertools.cycle(sent).__next__, itertools.cycle(bundles).__next__
        actions += [
            lambda sender=sender, next_record=next_record: sender.send(
                next_record(), SOURCE, DESTINATION, creation_time=CREATION_TIME
            ),
            lambda receiver=receiver, next_bundle=next_bundle: receiver.deliver(next_bundle()),
        ]
    send, deliver, send_dict, deliver_dict = best_rates(actions, rounds)
    (wire, ratio), (wire_dict, ratio_dict) = sizes
    print(
        f"{sum(map(len, sent)) / len(sent):8.0f} {wire:7.0f} {wire_dict:7.0f}"
        f"   {ratio:6.3f} {ratio_dict:6.3f}   {send:8.0f} {send_dict:8.0f} {send_dict / send:5.2f}"
        f"   {deliver:8.0f} {deliver_dict:8.0f} {deliver_dict / deliver:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bib", action="store_true", help="add a BIB (HMAC-SHA-256) to the BCB")
    parser.add_argument("--level", type=int, default=3, help="zstd level (default 3)")
    parser.add_argument("--rounds", type=int, default=15, help="timed batches per figure")
    args = parser.parse_args()
    sender, receiver = pipelines(args.bib, args.level)
    print(
        f"payload pipeline, zstd level {args.level}, BCB A256GCM"
        f"{' + BIB HMAC-SHA-256' if args.bib else ''}. MB/s of application data; ratio is "
        "pipeline / direct; overhead is the pipeline's extra time per bundle (us)."
    )
    print(
        f"{'data':<10}{'size':>9}{'wire':>7}  {'step':<8}{'pipeline':>8} {'+wire':>8} "
        f"{'direct':>8}  {'ratio':>5} {'+wire':>6}  {'overhead':>8}"
    )
    for name, make in (("telemetry", telemetry), ("random", random.Random(1).randbytes)):
        for size in SIZES:
            measure(name, make(size), sender, receiver, args.level, args.rounds)
    print(
        f"\nsmall telemetry records, one per bundle: without and with a "
        f"{DEFAULT_DICTIONARY_SIZE // 1024} KiB dictionary trained on {TRAINING_RECORDS} other "
        f"records ({TEST_RECORDS} records sent).\nrecord: mean bytes; wire: mean bundle bytes "
        "(Bundle.encode); payload: compressed / record bytes; records/s of send and deliver "
        "(no wire); ratio: with / without."
    )
    print(
        f"{'record':>8} {'wire':>7} {'+dict':>7}   {'payload':>6} {'+dict':>6}   "
        f"{'send/s':>8} {'+dict':>8} {'ratio':>5}   {'deliver/s':>8} {'+dict':>8} {'ratio':>5}"
    )
    for lines in RECORD_LINES:
        measure_records(lines, args.bib, args.level, args.rounds)


if __name__ == "__main__":
    main()
