"""What the targets share: the test vectors as bytes, and deterministic input mutations."""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"
REGRESSIONS = VECTORS / "fuzz"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@cache
def valid_bundles() -> tuple[bytes, ...]:
    """Every valid bundle the vectors hold: bpv7_valid.json (both lists), the peers' captures
    and the boundary cases RFC 9171 allows."""
    valid = _load("bpv7_valid.json")
    found = [v["hex"] for v in valid["vectors"] + valid["valid_but_pyd3tn_cannot_parse"]]
    found += [v["hex"] for v in _load("bpv7_invalid.json")["not_invalid_boundary_cases"]["vectors"]]
    for peer in ("ion_bundles.json", "ud3tn_bundles.json"):
        found += [b["hex"] for b in _load(f"peers/{peer}")["bundles"]]
    return tuple(bytes.fromhex(h) for h in found)


@cache
def invalid_bundles() -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(v["hex"]) for v in _load("bpv7_invalid.json")["vectors"])


@cache
def rfc9173_examples() -> tuple[dict, ...]:
    return tuple(_load("rfc9173_examples.json")["examples"])


@cache
def rfc9173_bundles() -> tuple[bytes, ...]:
    """The original and final bundles of the four RFC 9173 Appendix A examples."""
    found = []
    for example in rfc9173_examples():
        found.append(bytes.fromhex(example["expected"]["final_bundle_hex"]))
        original = example["inputs"].get("original_bundle_hex")
        if original:
            found.append(bytes.fromhex(original))
    return tuple(found)


def regressions(target: str) -> list[Path]:
    """Saved crash inputs of one target: tests/vectors/fuzz/<target>-*.bin."""
    return sorted(REGRESSIONS.glob(f"{target}-*.bin"))


def mutate(data: bytes, corpus: list[bytes], rng: random.Random) -> bytes:
    """One deterministic mutation of `data`: bit flips, a byte set to an edge value, a
    truncation, an insertion, or a splice with another corpus entry."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        if not out:
            out += bytes([rng.randrange(256)])
        position = rng.randrange(len(out))
        if kind == 0:
            out[position] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[position] = rng.choice((0x00, 0x01, 0x17, 0x18, 0x1B, 0x7F, 0x80, 0x9F, 0xFF))
        elif kind == 2:
            del out[rng.randrange(len(out) + 1) :]
        elif kind == 3:
            out[position:position] = rng.randbytes(rng.randint(1, 8))
        elif kind == 4:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            out = out[:position] + other[cut:]
        else:
            del out[position : position + rng.randint(1, 8)]
    return bytes(out)


def mutations(corpus: list[bytes], count: int, seed: int) -> list[bytes]:
    """`count` mutated inputs drawn from `corpus` with random.Random(seed)."""
    rng = random.Random(seed)
    return [mutate(rng.choice(corpus), corpus, rng) for _ in range(count)]
