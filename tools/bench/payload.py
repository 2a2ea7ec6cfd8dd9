"""Throughput of the payload pipeline beside direct zstandard + AESGCM calls, in the same run.

send:    PayloadPipeline.send(data) -> Bundle (compress, bundle, BCB-AES-GCM A256GCM)
deliver: PayloadPipeline.deliver(bundle) -> data (decrypt, policy checks, decompress)
direct:  ZstdCompressor.compress + AESGCM.encrypt, and AESGCM.decrypt + ZstdDecompressor
         .decompress, on the same data, reusing the contexts as the pipeline does.
"+wire" adds Bundle.encode after send and Bundle.decode before deliver (the node's framing).

MB/s counts application bytes. Each figure is the best of several timed batches, the four
measurements of a row interleaved so machine load hits them alike.
Run: python -m tools.bench.payload [--bib] [--level N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import random

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtn.bundle import EID, Bundle
from dtn.payload import PayloadPipeline
from dtn.security import Keyring, SecurityPolicy
from tools.bench.timing import best_rates

SIZES = (64 * 1024, 1024 * 1024)
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


def pipelines(bib: bool, level: int) -> tuple[PayloadPipeline, PayloadPipeline]:
    """(sender, receiver) sharing keys, the rule covering both directions."""
    rule = {"destination": "ipn:2.*", "source": "ipn:1.*", "bcb": "A256GCM", "key": "link"}
    if bib:
        rule.update(bib="HMAC-SHA-256", bib_key="sign")
    policy = SecurityPolicy.from_config({"rule": [rule]})
    keys = Keyring({"link": os.urandom(32), "sign": os.urandom(32)})
    sender = PayloadPipeline(policy, keys, EID.parse("ipn:1.0"), compression_level=level)
    receiver = PayloadPipeline(policy, keys, EID.parse("ipn:2.0"), compression_level=level)
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


if __name__ == "__main__":
    main()
