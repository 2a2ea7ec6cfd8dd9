"""Encode and decode rates of the BPv7 codec, beside pyd3tn 0.15.2 in the same run.

dtn verifies every CRC on decode; pyd3tn verifies none. Both build the same bundle: CRC-32C on
the primary and payload blocks. Run: python -m tools.bench.codec
"""

from __future__ import annotations

import os

from dtn.bundle import Bundle, CRCType
from dtn.clock import unix_from_dtn_ms
from tools.bench.timing import best_rates

SOURCE, DESTINATION, REPORT_TO = "dtn://earth-gs/", "dtn://mars-base/inbox", "dtn://earth-gs/"
CREATION_TIME = 817_000_000_000
ROUNDS = 15


def dtn_bundle(payload: bytes) -> Bundle:
    return Bundle.create(SOURCE, DESTINATION, payload, creation_time=CREATION_TIME, sequence=7,
                         report_to=REPORT_TO, crc_type=CRCType.CRC32C)


def pyd3tn_bundle(payload: bytes):
    from pyd3tn import bundle7

    primary = bundle7.PrimaryBlock(destination=DESTINATION, source=SOURCE, report_to=REPORT_TO,
                                   crc_type=bundle7.CRCType.CRC32,
                                   creation_time=bundle7.CreationTimestamp(
                                       unix_from_dtn_ms(CREATION_TIME), 7))
    return bundle7.Bundle(primary_block=primary, payload_block=bundle7.PayloadBlock(
        payload, crc_type=bundle7.CRCType.CRC32))


def main() -> None:
    try:
        from pyd3tn.bundle7 import Bundle as PyBundle
    except ImportError:
        PyBundle = None
        print("pyd3tn not installed (pip install -e '.[bench]'): dtn figures only")
    print(f"{'payload':>8} {'op':>7} {'dtn /s':>12} {'pyd3tn /s':>12} {'ratio':>7}")
    for size in (1024, 65536):
        payload = os.urandom(size)
        ours = dtn_bundle(payload)
        raw = ours.encode()
        assert Bundle.decode(raw).payload == payload
        rows = [("encode", lambda b=ours: b.encode()), ("decode", lambda r=raw: Bundle.decode(r))]
        peer_rows = {}
        if PyBundle is not None:
            theirs = pyd3tn_bundle(payload)
            their_raw = bytes(theirs)
            assert PyBundle.parse(their_raw).payload_block.data == payload
            peer_rows = {"encode": lambda b=theirs: bytes(b),
                         "decode": lambda r=their_raw: PyBundle.parse(r)}
        for name, action in rows:
            if name in peer_rows:
                ours_rate, peer_rate = best_rates([action, peer_rows[name]], ROUNDS)
                print(f"{size:>8} {name:>7} {ours_rate:>12,.0f} {peer_rate:>12,.0f} "
                      f"{ours_rate / peer_rate:>6.2f}x")
            else:
                print(f"{size:>8} {name:>7} {best_rates([action], ROUNDS)[0]:>12,.0f}")


if __name__ == "__main__":
    main()
