"""The node's datagram links (udp-rs, ltp, ltp+rs), built from its neighbour config."""

from __future__ import annotations

from dtn.cla.ltp_link import LtpLink, LtpLinkConfig
from dtn.cla.udp import UdpRsConfig, UdpRsLink, pacing_burst
from dtn.config import NodeConfig
from dtn.config.node import NeighbourTable


def udp_rs_link(config: NodeConfig, neighbour: NeighbourTable, rate: float | None) -> UdpRsLink:
    fec = config.file.fec
    return UdpRsLink(UdpRsConfig(
        frame_size=fec.frame_size,
        depth=fec.depth,
        linger=fec.linger,
        rate_bps=rate,
        burst_bytes=pacing_burst(rate, config.time_scale),
        reassembly_timeout=fec.reassembly_timeout,
    ))


def datagram_link(config: NodeConfig, neighbour: NeighbourTable) -> UdpRsLink | LtpLink:
    """The link a udp-rs, ltp or ltp+rs neighbour is reached over."""
    rate = None if neighbour.rate is None else float(neighbour.rate)
    if neighbour.cla == "udp-rs":
        return udp_rs_link(config, neighbour, rate)
    local, remote = config.ltp_engines(neighbour)
    ltp = neighbour.ltp
    return LtpLink(
        LtpLinkConfig(
            local_engine=local,
            remote_engine=remote,
            owlt=config.light_time(neighbour, config.epoch),
            segment_size=int(ltp.segment_size),
            aggregation_size=int(ltp.aggregation_size),
            aggregation_time=float(ltp.aggregation_time),
            timeout_margin=float(ltp.timeout_margin),
            max_retransmissions=ltp.max_retransmissions,
            max_block_size=int(config.file.agent.max_bundle_size),
            rate_bps=rate,
            burst_bytes=pacing_burst(rate, config.time_scale),
        ),
        # ltp+rs: LTP's segments as records of RS-coded frames, paced by the coded link
        lower=udp_rs_link(config, neighbour, rate) if neighbour.cla == "ltp+rs" else None,
    )
