"""An Earth–Mars pair of real node daemons and the link emulator on 127.0.0.1, for the
integration tests and the node benchmark.

The configs are written per run with free ports, the light time, rate, channel and clock scale
asked for (a short light time lets custody timers run out within a test)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dtn.scenario.processes import Network, free_ports, private_copy

CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"


def node_config(name: str, node: int, other: str, other_node: int, listen: int, send_to: int,
                light_time: str, rate: str, extra: str = "", scale: float = 1000,
                log_level: str = "info", agent: str = "", neighbour: str = "") -> str:
    return f"""
[node]
id = "ipn:{node}.0"
[clock]
time_scale = {scale}
[store]
path = "{name}.db"
synchronous = "NORMAL"
{extra}
[api]
socket = "{name}.sock"
[log]
level = "{log_level}"
[agent]
custody_margin = "5s"
{agent}
[security]
keyfile = "keys-example.toml"
[[security.rule]]
destination = "ipn:{other_node}.*"
source = "ipn:{other_node}.*"
bcb = "A256GCM"
key = "mars-link"
[[neighbour]]
name = "{other}"
listen = "127.0.0.1:{listen}"
address = "127.0.0.1:{send_to}"
rate = "{rate}"
light_time = "{light_time}"
node_id = "ipn:{other_node}.0"
{neighbour}
[[route]]
pattern = "ipn:{other_node}.*"
via = ["{other}"]
"""


def earth_mars(folder: Path, *, light_time: str = "60s", rate: str = "2 Mbit/s",
               ber: float = 0.0, loss: float = 0.0, earth_store: str = "",
               mars_store: str = "", scale: float = 1000, log_level: str = "info",
               agent: str = "", neighbour: str = "") -> tuple[Network, Path, Path, Path]:
    """A Network (not started) and the three configs: earth, mars, emulator. `agent` and
    `neighbour` are extra lines for both nodes' [agent] and [[neighbour]] tables."""
    earth_port, mars_port, to_mars, to_earth = free_ports(4)
    private_copy(CONFIGS / "keys-example.toml", folder)
    earth = folder / "earth.toml"
    earth.write_text(node_config("earth", 1, "mars", 2, earth_port, to_mars, light_time, rate,
                                 earth_store, scale, log_level, agent, neighbour))
    mars = folder / "mars.toml"
    mars.write_text(node_config("mars", 2, "earth", 1, mars_port, to_earth, light_time, rate,
                                mars_store, scale, log_level, agent, neighbour))
    emulator = folder / "emulator.toml"
    emulator.write_text(f"""
seed = 7
[clock]
time_scale = {scale}
[[link]]
name = "earth-mars"
a = {{ name = "earth", node = "127.0.0.1:{earth_port}", listen = "127.0.0.1:{to_mars}" }}
b = {{ name = "mars", node = "127.0.0.1:{mars_port}", listen = "127.0.0.1:{to_earth}" }}
delay = "{light_time}"
rate = "{rate}"
ber = {ber}
loss = {loss}
""")
    return Network(folder), earth, mars, emulator


def stream_pair(folder: Path, cla: str, *, scale: float = 1, neighbour: str = "",
                custody: bool = True, security: bool = True, log_level: str = "info",
                synchronous: str = "NORMAL") -> tuple[Network, Path, Path]:
    """Two nodes linked directly over a TCP layer (`cla`), each listening and each
    connecting to the other, on a wall-clock mission clock (no light time to scale);
    `neighbour` is extra lines for both neighbour tables; without
    `security`, no BCB between them. A Network (not started) and the configs: earth, mars."""
    earth_port, mars_port = free_ports(2, "tcp")
    private_copy(CONFIGS / "keys-example.toml", folder)
    paths = []
    for name, node, other, other_node, listen, peer in (
        ("earth", 1, "mars", 2, earth_port, mars_port),
        ("mars", 2, "earth", 1, mars_port, earth_port),
    ):
        text = node_config(name, node, other, other_node, listen, peer, "0s", "1 Gbit/s",
                           scale=scale, log_level=log_level)
        text = text.replace('"NORMAL"', f'"{synchronous}"')
        head, _, _ = text.partition("[[neighbour]]")
        if not security:
            head = head.split("[[security.rule]]")[0]
        text = head + f"""[[neighbour]]
name = "{other}"
cla = "{cla}"
node_id = "ipn:{other_node}.0"
listen = "127.0.0.1:{listen}"
address = "127.0.0.1:{peer}"
custody = {str(custody).lower()}
{neighbour}
[[route]]
pattern = "ipn:{other_node}.*"
via = ["{other}"]
"""
        path = folder / f"{name}.toml"
        path.write_text(text)
        paths.append(path)
    return Network(folder), paths[0], paths[1]


def write_science_file(path: Path, mib: int) -> str:
    """A test dataset of `mib` MiB written 1 MiB at a time (even MiBs random, odd ones
    repetitive, so half of it compresses); its SHA-256 in hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            piece = hashlib.sha256(bytes([i % 256])).digest() * 32768 if i % 2 else os.urandom(
                1 << 20)
            digest.update(piece)
            f.write(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def start(net: Network, earth: Path, mars: Path, emulator: Path) -> None:
    net.emulator(emulator)
    net.node("earth", earth)
    net.node("mars", mars)
    net.wait_ready()
