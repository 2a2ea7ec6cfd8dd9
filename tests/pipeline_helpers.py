"""What the payload pipeline tests share: one bundle sent to the wire and back."""

from dtn.bundle import EID, Bundle
from dtn.payload import PayloadPipeline
from dtn.security import Keyring, SecurityPolicy

EARTH, MARS = EID.parse("ipn:1.0"), EID.parse("ipn:2.0")
KEYS = Keyring(
    {
        "link": bytes(range(32)),
        "link16": bytes(range(16)),
        "sign": bytes(range(50, 98)),
        "kek": bytes(range(7, 31)),
    }
)
TELEMETRY = b"".join(b'{"t":%d,"bus_v":28.%d,"mode":"nominal"}\n' % (i, i % 7) for i in range(300))
RULES = {
    "bcb-256": {"bcb": "A256GCM", "key": "link"},
    "bcb-128-wrapped": {"bcb": "A128GCM", "key": "kek", "key_wrap": True},
    "bib-512": {"bib": "HMAC-SHA-512", "key": "sign"},
    "bib-256-wrapped-scope-0": {"bib": "HMAC-SHA-256", "key": "kek", "key_wrap": True, "scope": 0},
    "bcb+bib": {"bcb": "A256GCM", "key": "link", "bib": "HMAC-SHA-384", "bib_key": "sign"},
    "bcb-128-scope-1": {"bcb": "A128GCM", "key": "link16", "scope": 1},
}


def pair(rule: dict | None, keys: Keyring = KEYS) -> tuple[PayloadPipeline, PayloadPipeline]:
    """(Earth sending to ipn:2.*, Mars receiving from ipn:1.*) under one rule, or none."""
    earth = [{"destination": "ipn:2.*", **rule}] if rule else []
    mars = [{"source": "ipn:1.*", **rule}] if rule else []
    return (
        PayloadPipeline(SecurityPolicy.from_config({"rule": earth}), keys, EARTH),
        PayloadPipeline(SecurityPolicy.from_config({"rule": mars}), keys, MARS),
    )


def send(pipeline: PayloadPipeline, data: bytes, sequence: int = 0) -> bytes:
    return pipeline.send(
        data, "ipn:1.1", "ipn:2.1", creation_time=800_000_000_000, sequence=sequence
    ).encode()


def receive(pipeline: PayloadPipeline, wire: bytes) -> bytes:
    return pipeline.deliver(Bundle.decode(wire))
