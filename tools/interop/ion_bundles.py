"""Bundles this project sends, as files for ../shared/peers/ion-delivers.sh (NASA ION 4.1.3 over
STCP): plain (CRC-16, CRC-32C), forwarded by the agent with and without custody, compressed by
the payload pipeline, and signed with a BIB. Each is addressed to ipn:3.1, created now, with a
lifetime of two hours.

    python -m tools.interop.ion_bundles OUT_DIR     # then: ion-delivers.sh OUT_DIR/*.bundle
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from dtn.agent import Agent, AgentConfig, Link, Route, Router, Transmit
from dtn.bundle import EID, Bundle, CRCType
from dtn.clock import dtn_time_ms
from dtn.payload import PayloadPipeline
from dtn.security import Keyring, SecurityPolicy
from dtn.store import BundleStore

DESTINATION = "ipn:3.1"
SOURCE = "ipn:1.1"
LIFETIME_MS = 2 * 3600 * 1000
TELEMETRY = b"".join(b'{"t":%d,"bus_v":28.%d,"mode":"nominal"}\n' % (i, i % 7) for i in range(200))


def _forwarded(folder: Path, custody: bool, now: float) -> bytes:
    """What the agent puts on a link to ION's node: previous node, bundle age, and with
    custody our custody block."""
    router = Router([Route("ipn:3.*", ("ion",))], [Link("ion", custody=custody)])
    store = BundleStore(folder / f"agent-{custody}.db")
    agent = Agent("ipn:1.0", store, router, AgentConfig())
    agent.submit(b"forwarded by the agent", DESTINATION, now, source=SOURCE,
                 lifetime=LIFETIME_MS / 1000)
    agent.contact_up("ion", now)
    sent = [a.data for a in agent.next_actions() if isinstance(a, Transmit)]
    store.close()
    return sent[0]


def make(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    now = time.time()
    created = dtn_time_ms(now)
    plain = {
        f"plain-{name}": Bundle.create(SOURCE, DESTINATION, b"plain bundle " + name.encode(),
                                       creation_time=created, sequence=i,
                                       lifetime=LIFETIME_MS, crc_type=crc).encode()
        for i, (name, crc) in enumerate((("crc16", CRCType.CRC16), ("crc32c", CRCType.CRC32C)))
    }
    keys = Keyring({"sign": bytes(range(32))})
    sealed = {}
    for name, rules in (("compressed", []),
                        ("bib", [{"destination": "ipn:3.*", "bib": "HMAC-SHA-256",
                                  "key": "sign"}])):
        pipeline = PayloadPipeline(SecurityPolicy.from_config({"rule": rules}), keys,
                                   EID.parse("ipn:1.0"))
        sealed[name] = pipeline.send(TELEMETRY, SOURCE, DESTINATION, creation_time=created,
                                     sequence=10, lifetime=LIFETIME_MS).encode()
    with tempfile.TemporaryDirectory() as folder:
        forwarded = {"custody": _forwarded(Path(folder), True, now),
                     "no-custody": _forwarded(Path(folder), False, now)}
    paths = []
    for name, data in {**plain, **sealed, **forwarded}.items():
        path = out / f"{name}.bundle"
        path.write_bytes(data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in make(Path(sys.argv[1] if len(sys.argv) > 1 else "ion-bundles")):
        print(written)
