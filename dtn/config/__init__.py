"""Typed config files (core: no asyncio, no sockets): units, the msgspec schema layer, the node
config. The emulator's config (dtn.emulator.config) is built on the same layer."""

from dtn.config.node import NodeConfig, load_node_config
from dtn.config.schema import ConfigError

__all__ = ["ConfigError", "NodeConfig", "load_node_config"]
