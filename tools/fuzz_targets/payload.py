"""Payload delivery (PayloadPipeline.deliver: BPSec, policy, compression block, zstd) on
mutated bundles that pipelines sealed. An input is one rule byte then the bundle: the byte
picks the receiving pipeline's policy rule. Each input gets a fresh receiver that has first
accepted one good bundle from the sender, so both the general path and the learned-template
path (_open_known) see the mutations, and a crash replays alone."""

from __future__ import annotations

from functools import cache

from dtn.bundle import EID, Bundle, BundleError
from dtn.payload import PayloadPipeline, PayloadRejected
from dtn.security import Keyring, SecurityPolicy

_KEYS = Keyring({"link": bytes(range(32)), "link16": bytes(range(16)),
                 "sign": bytes(range(50, 98)), "kek": bytes(range(7, 31))})
_RULES = (
    None,
    {"bcb": "A256GCM", "key": "link"},
    {"bcb": "A128GCM", "key": "kek", "key_wrap": True},
    {"bib": "HMAC-SHA-512", "key": "sign"},
    {"bib": "HMAC-SHA-256", "key": "kek", "key_wrap": True, "scope": 0},
    {"bcb": "A256GCM", "key": "link", "bib": "HMAC-SHA-384", "bib_key": "sign"},
    {"bcb": "A128GCM", "key": "link16", "scope": 1},
)
_EARTH, _MARS = EID.parse("ipn:1.0"), EID.parse("ipn:2.0")
# Compressible, incompressible and empty application data.
_DATA = (b'{"t":1,"bus_v":28.1,"mode":"nominal"}\n' * 40, bytes(range(256)) * 3, b"")


def _pipeline(rule: dict | None, direction: str, node: EID) -> PayloadPipeline:
    pattern = "ipn:2.*" if direction == "destination" else "ipn:1.*"
    rules = [{direction: pattern, **rule}] if rule else []
    policy = SecurityPolicy.from_config({"rule": rules})
    return PayloadPipeline(policy, _KEYS, node, random_bytes=lambda n: bytes(n))


def _send(rule_index: int, data: bytes, sequence: int) -> bytes:
    sender = _pipeline(_RULES[rule_index], "destination", _EARTH)
    return sender.send(data, "ipn:1.1", "ipn:2.1", creation_time=800_000_000_000,
                       sequence=sequence).encode()


@cache
def _warm_up(rule_index: int) -> bytes:
    return _send(rule_index, _DATA[0], 0)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    rule_index = data[0] % len(_RULES)
    receiver = _pipeline(_RULES[rule_index], "source", _MARS)
    receiver.deliver(Bundle.decode(_warm_up(rule_index)))  # learns the sender's templates
    try:
        receiver.deliver(Bundle.decode(data[1:]))
    except (BundleError, PayloadRejected):
        return


def seeds() -> list[bytes]:
    return [bytes([rule]) + _send(rule, payload, sequence)
            for rule in range(len(_RULES)) for sequence, payload in enumerate(_DATA, 1)]
