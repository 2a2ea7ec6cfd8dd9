"""The emulator config loader (dtn.emulator.config.parse_config, through the dtn.config
schema layer) on mutated TOML text. Contacts files resolve under configs/, so the emulator
configs there and the contact plans they name are the seeds. ConfigError is the typed error."""

from __future__ import annotations

from pathlib import Path

from dtn.emulator.config import ConfigError, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_one_input(data: bytes) -> None:
    try:
        parse_config(data.decode("utf-8", "replace"), CONFIGS)
    except ConfigError:
        return


def seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CONFIGS.glob("*.toml"))]
