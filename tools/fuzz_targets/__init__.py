"""Coverage-guided fuzz targets, one module per decoder of untrusted input.

Each module exposes `test_one_input(data: bytes)`, which returns normally for every input the
code under test accepts or rejects with its typed error and raises anything else (a crash), and
`seeds() -> list[bytes]`, the starting corpus. `tools/fuzz` runs them under atheris;
tests/test_fuzz_replay.py replays seeds, deterministic mutations and saved crashes without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

NAMES = ("bundle", "bpsec", "payload", "fec", "store", "emulator_config", "api")


def load(name: str) -> ModuleType:
    """The target module `name` (one of NAMES)."""
    if name not in NAMES:
        raise KeyError(f"unknown fuzz target {name!r}; targets: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


TestOneInput = Callable[[bytes], None]
