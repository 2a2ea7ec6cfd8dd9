"""The node's stream convergence layers, built from its neighbour config: one StreamLink per
tcpcl3/tcpcl4/mtcp/stcp neighbour, one StreamListener per (layer, listen address)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from dtn.cla.framed import MtcpSession, StcpSession
from dtn.cla.session import StreamSession
from dtn.cla.stream_shell import StreamCallbacks, StreamLink, StreamListener
from dtn.cla.tcpcl3 import Tcpcl3Session
from dtn.cla.tcpcl4 import Tcpcl4Session
from dtn.config.node import NeighbourTable, TlsTable


def tls_contexts(tls: TlsTable, base: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client, server) contexts: the peer's certificate is always checked against `ca`."""
    def path(name: str | None) -> str | None:
        return None if name is None else str(base / name)

    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=path(tls.ca))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=path(tls.ca))
    if tls.ca is not None:
        server.verify_mode = ssl.CERT_REQUIRED  # both ends show a certificate
    if tls.certificate is not None:
        for context in (client, server):
            context.load_cert_chain(path(tls.certificate), path(tls.key))
    return client, server


def session_factory(
    neighbour: NeighbourTable, local_eid: str, max_bundle_size: int, base: Path
) -> Callable[[bool], StreamSession]:
    """A function making the neighbour's session, active (we connected) or passive."""
    keepalive = int(neighbour.keepalive)
    segment = int(neighbour.segment_size)
    if neighbour.cla == "mtcp":
        return lambda active: MtcpSession(max_bundle_size=max_bundle_size, keepalive=keepalive)
    if neighbour.cla == "stcp":
        return lambda active: StcpSession(max_bundle_size=max_bundle_size, keepalive=keepalive)
    if neighbour.cla == "tcpcl3":
        return lambda active: Tcpcl3Session(
            local_eid, active=active, keepalive=keepalive, segment_size=segment,
            max_bundle_size=max_bundle_size,
        )
    contexts = None if neighbour.tls is None else tls_contexts(neighbour.tls, base)
    server_name = None
    if neighbour.tls is not None:
        server_name = neighbour.tls.server_name or (neighbour.address or ("localhost",))[0]

    def tcpcl4(active: bool) -> StreamSession:
        return Tcpcl4Session(
            local_eid, active=active, keepalive=keepalive, segment_mru=segment,
            transfer_mru=max_bundle_size,
            ssl_context=None if contexts is None else contexts[0 if active else 1],
            server_hostname=server_name if active else None,
        )

    return tcpcl4


class StreamLayers:
    """Every stream link of a node and the listeners they share."""

    def __init__(
        self,
        neighbours: list[NeighbourTable],
        local_eid: str,
        max_bundle_size: int,
        config_dir: Path,
        callbacks: StreamCallbacks,
    ) -> None:
        self.links: dict[str, StreamLink] = {}
        self.listeners: dict[tuple[str, tuple[str, int]], StreamListener] = {}
        for neighbour in neighbours:
            if not neighbour.streams:
                continue
            make = session_factory(neighbour, local_eid, max_bundle_size, config_dir)
            link = StreamLink(
                neighbour.name, make, callbacks, address=neighbour.address,
                connect=neighbour.connect, node_id=neighbour.node_id,
            )
            self.links[neighbour.name] = link
            if neighbour.listen is not None:
                key = (neighbour.cla, tuple(neighbour.listen))
                listener = self.listeners.get(key)
                if listener is None:
                    listener = self.listeners[key] = StreamListener(neighbour.listen, make, [])
                listener.links.append(link)

    async def start(self) -> None:
        for listener in self.listeners.values():
            await listener.start()
        for link in self.links.values():
            link.start()

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        for link in self.links.values():
            link.close()

    def counters(self) -> dict[str, dict[str, int]]:
        out = {f"{cla} {h}:{p}": dict(listener.counters)
               for (cla, (h, p)), listener in self.listeners.items()}
        out.update({f"link {name}": dict(link.counters) for name, link in self.links.items()})
        return out
