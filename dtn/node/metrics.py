"""Prometheus metrics of a running node, rendered with prometheus-client at each scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dtn.cla.ltp_link import LtpLink


class _NodeCollector:
    def __init__(self, node, server) -> None:
        self.node, self.server = node, server

    def collect(self):
        node = self.node
        agent = CounterMetricFamily("dtn_agent_events", "Bundle agent counters", labels=["event"])
        for name, value in sorted(node.agent.counters.items()):
            agent.add_metric([name], value)
        yield agent
        store = GaugeMetricFamily("dtn_store_bundles", "Live bundles stored", labels=["state"])
        stored_bytes = GaugeMetricFamily("dtn_store_bytes", "Bytes of live bundles stored",
                                         labels=["state"])
        for state, (count, size) in node.store.count_by_state().items():
            store.add_metric([state.name.lower()], count)
            stored_bytes.add_metric([state.name.lower()], size)
        yield store
        yield stored_bytes
        frames = CounterMetricFamily("dtn_link_datagrams", "Datagrams on a link",
                                     labels=["neighbour", "direction"])
        octets = CounterMetricFamily("dtn_link_bytes", "Datagram bytes on a link",
                                     labels=["neighbour", "direction"])
        corrected = CounterMetricFamily(
            "dtn_link_frames_corrected", "Frames whose bit errors RS corrected", ["neighbour"]
        )
        dropped = CounterMetricFamily("dtn_link_frames_dropped", "Frames dropped, by reason",
                                      labels=["neighbour", "reason"])
        ltp = CounterMetricFamily("dtn_ltp_events", "LTP link and engine counters",
                                  labels=["neighbour", "event"])
        for name, link in node.links.items():
            if isinstance(link, LtpLink):
                for event, value in sorted({**link.counters, **link.engine_counters}.items()):
                    ltp.add_metric([name, event], value)
                continue
            c = link.counters
            frames.add_metric([name, "out"], c.datagrams_out)
            frames.add_metric([name, "in"], c.datagrams_in)
            octets.add_metric([name, "out"], c.bytes_out)
            octets.add_metric([name, "in"], c.bytes_in)
            corrected.add_metric([name], c.fec.frames_corrected)
            for reason, value in c.fec.frames_dropped.items():
                dropped.add_metric([name, reason], value)
        yield from (frames, octets, corrected, dropped, ltp)
        sessions = CounterMetricFamily("dtn_stream_events", "Stream convergence layer counters",
                                       labels=["where", "event"])
        for where, counters in sorted(node.streams.counters().items()):
            for event, value in sorted(counters.items()):
                sessions.add_metric([where, event], value)
        yield sessions
        clients = GaugeMetricFamily("dtn_api_clients", "Connected API clients")
        clients.add_metric([], self.server.clients)
        yield clients


def render_metrics(node, server) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node, server))
    return generate_latest(registry).decode()
