"""A scenario on the sans-I/O cores in one process, on virtual time (`--virtual`).

The nodes are built from the same node configs real mode writes (`dtn.config.node` reads them:
routes, contact plan, quotas, agent settings), each an agent on a real SQLite store; every
direction of every link is emulated from the same emulator config (framing, pacing, the
emulator's channel). What virtual mode leaves out: the payload pipeline (compression and BCB:
bundles carry the application's bytes as they are) and the API between application and node.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from dtn.agent import Deliver, Event, Transmit
from dtn.bundle import EID
from dtn.config.node import NodeConfig, build_node_config
from dtn.emulator.channel import ChannelDirection
from dtn.emulator.config import build_config
from dtn.fec import FrameConfig
from dtn.scenario.config import (
    FaultTable,
    Ports,
    Scenario,
    emulator_document,
    node_document,
    write_run_keys,
)
from dtn.scenario.expect import judge
from dtn.scenario.plan import (
    FILL_MAX,
    FILL_SIZES,
    REFUSED_RETRY,
    Send,
    fill_text,
    filler,
    link_records,
    new_record,
    path_light_times,
    payload,
    sends,
)
from dtn.scenario.record import BundleRecord, FaultRecord, RunRecord
from dtn.scenario.virtual import VirtualNet, VirtualNode
from dtn.store import State, StoreFull

MISSION_START = 1_795_651_200.0  # 2026-11-26T00:00:00Z: virtual runs start here
MAX_STEPS = 50_000_000


def whole_id(bundle_id: object) -> str:
    """A bundle's ID without a fragment's offset and length: fragments count as their bundle."""
    return str(bundle_id).split("#", 1)[0]


class VirtualRun:
    def __init__(self, scenario: Scenario, folder: Path) -> None:
        self.scenario = scenario = scenario.at_epoch(MISSION_START)
        self.t0 = MISSION_START
        self.net = VirtualNet(folder, self.t0)
        self.record = RunRecord(scenario.name, "virtual", 0.0)
        self.records: dict[str, BundleRecord] = {}  # by whole bundle ID
        self._transmitted: set[tuple[str, str]] = set()  # (node, bundle or fragment ID)
        self._custody: set[tuple[str, str]] = set()  # (node, whole ID) released there
        self._waiting: dict[str, list[Send]] = {}  # sends due while their node was down
        self._refused: dict[str, BundleRecord] = {}  # by send key: store full, tried again
        self._due = 0
        configs: dict[str, NodeConfig] = {}
        ports = {link.link_name: Ports(0, 0, 0, 0) for link in scenario.file.link}
        write_run_keys(folder)
        for node in scenario.file.node:
            configs[node.name] = self._add_node(node.name, node_document(scenario, node.name,
                                                                         ports), folder)
        self.emulator = build_config(emulator_document(scenario, ports), folder / "emulator")
        for link in self.emulator.links:
            for direction, sender, receiver in (("a_to_b", link.a.name, link.b.name),
                                                ("b_to_a", link.b.name, link.a.name)):
                params = getattr(link, direction)
                channel = ChannelDirection(params, self.emulator.direction_seed(link, direction))
                fec = configs[sender].file.fec
                rate = next(n.rate for n in configs[sender].neighbours if n.name == receiver)
                self.net.emulate(sender, receiver, channel, FrameConfig(fec.frame_size, fec.depth),
                                 rate or 0.0)
        self.net.observers.append(self._observe)
        self._uncommitted: list[tuple[Send, BundleRecord]] = []  # submitted, not yet durable
        self.net.after_collect.append(self._uncommitted.clear)
        for name in self.net.nodes:
            self._contacts(name)

    def _add_node(self, name: str, document: dict, folder: Path) -> NodeConfig:
        config = build_node_config(document, folder / f"{name}.toml", data_dir=folder / name)
        (folder / name).mkdir(exist_ok=True)
        self.net.add(VirtualNode(name, config.node_id, config.store_path,
                                 config.router(self.t0), config.agent_config(), config.quota()))
        return config

    # === contacts, traffic, faults =============================================================

    def _contacts(self, name: str) -> None:
        """Follow the node's contact plan from now on (as the daemon does)."""
        self._apply_plan(name)
        edge = self.net.nodes[name].router.plan.next_transition(self.net.now)
        if edge is not None:
            self.net.at(edge[0], lambda: self._contacts(name))

    def _apply_plan(self, name: str) -> None:
        """Links up and down as the node's contact plan says now (a node that is down learns
        of it when it starts again)."""
        node, now = self.net.nodes[name], self.net.now
        if node.agent is None:
            return
        plan = node.router.plan
        for neighbour in node.router.links:
            up = plan.is_up(neighbour, now) if plan.plans(neighbour) else True
            if up != ((name, neighbour) in self.net.up):
                self.net.set_contact(name, neighbour, up)

    def _send(self, send: Send) -> None:
        source = send.traffic.source
        node = self.net.nodes[source]
        if node.agent is None:
            self._waiting.setdefault(source, []).append(send)
            return
        data = payload(self.scenario, send)
        record = self._refused.pop(send.key, None) or new_record(send, data, 0.0)
        record.sent_at = self.net.now - self.t0
        traffic = send.traffic
        try:
            bundle_id = node.agent.submit(
                data, traffic.to, self.net.now, lifetime=traffic.lifetime,
                priority=traffic.priority, custody=traffic.custody,
                report_to=node.node_id if traffic.report else None)
        except StoreFull as error:  # the application tries again a little later
            if not record.refusals:
                self.record.bundles.append(record)
            record.refusals += 1
            record.refused = str(error)
            self._refused[send.key] = record
            self.net.at(self.net.now + REFUSED_RETRY, lambda: self._send(send))
            return
        record.refused = None
        record.bundle_id = str(bundle_id)
        self.records[record.bundle_id] = record
        self._uncommitted.append((send, record))
        if not record.refusals:
            self.record.bundles.append(record)
        self._due -= 1

    def _fault(self, index: int) -> None:
        fault = self.scenario.file.fault[index]
        at = self.net.now - self.t0
        if fault.action == "kill":
            self._unsend(fault.node)
            self.net.crash(fault.node)
            self.record.faults.append(FaultRecord(at, f"kill -9 {fault.node}"))
            if fault.restart_after is not None:
                self.net.at(self.net.now + fault.restart_after, lambda: self._restart(fault.node))
        elif fault.action == "fill_store":
            self._fill(fault)
        elif fault.action == "restart_emulator":
            lost = self.net.lose_in_flight()
            self.record.faults.append(FaultRecord(at, f"emulator restarted ({lost} in flight "
                                                      "lost)"))
        else:
            self.record.faults.append(FaultRecord(
                at, f"contact {fault.link} cut for {fault.duration / 60:g} min"))

    def _fill(self, fault: FaultTable) -> None:
        """Store bundles for the node's fill endpoint until its store refuses one; they wait
        there (nobody takes them) until the fault's duration is over."""
        node, table = self.net.nodes[fault.node], self.scenario.node(fault.node)
        at = self.net.now - self.t0
        if node.agent is None:
            self.record.faults.append(FaultRecord(at, f"store of {fault.node} not filled: down"))
            return
        node.hold.add(table.fill_endpoint)
        count = stored = 0
        for size in FILL_SIZES:
            try:
                while count < FILL_MAX:
                    node.agent.submit(filler(size, count), table.fill_endpoint, self.net.now,
                                      custody=False)
                    count, stored = count + 1, stored + size
            except StoreFull:
                continue
        self.record.faults.append(FaultRecord(at, fill_text(fault.node, count, stored)))
        if fault.duration is not None:
            self.net.at(self.net.now + fault.duration, lambda: self._drain(fault.node))

    def _drain(self, name: str) -> None:
        node = self.net.nodes[name]
        taken = node.release(self.scenario.node(name).fill_endpoint, self.net.now)
        self.record.faults.append(FaultRecord(self.net.now - self.t0,
                                              f"store of {name} emptied ({taken} taken)"))

    def _unsend(self, name: str) -> None:
        """Sends not yet committed when their node dies were never acknowledged: the
        application sends them again once the node is back (as through the API)."""
        for send, record in self._uncommitted:
            if send.traffic.source == name:
                del self.records[record.bundle_id]
                self.record.bundles.remove(record)
                self._due += 1
                self._waiting.setdefault(name, []).append(send)
        self._uncommitted = [(s, r) for s, r in self._uncommitted if s.traffic.source != name]

    def _restart(self, name: str) -> None:
        self.record.faults.append(FaultRecord(self.net.now - self.t0, f"restart {name}"))
        self.net.start(name)
        self._apply_plan(name)  # its links as they were, then as the plan says now
        for send in self._waiting.pop(name, []):
            self._send(send)

    # === what the nodes did ====================================================================

    def _observe(self, node: VirtualNode, action: object) -> None:
        now = self.net.now - self.t0
        if isinstance(action, Transmit):
            record = self.records.get(whole_id(action.bundle_id))
            if record is None:
                return
            key = (node.name, str(action.bundle_id))
            if key in self._transmitted:
                record.forwarded.append(now)  # the same bundle (or piece) again: a retry
            else:
                self._transmitted.add(key)
                if node.name == record.source and not record.forwarded:
                    record.forwarded.append(now)
        elif isinstance(action, Deliver):
            record = self.records.get(whole_id(action.bundle_id))
            if record is not None and not action.is_admin_record:
                record.delivered.append(now)
                record.intact &= hashlib.sha256(action.payload).hexdigest() == record.sha256
        elif isinstance(action, Event) and action.name == "custody_released":
            record = self.records.get(whole_id(action.bundle_id))
            hop = (node.name, whole_id(action.bundle_id))
            if record is not None and hop not in self._custody:
                self._custody.add(hop)
                next_hop = node.router.next_hop(EID.parse(record.destination), self.net.now)
                record.custody.append((next_hop or f"after {node.name}", now))

    def _done(self) -> bool:
        if self._due or not self.record.all_delivered:
            return False
        if not self.scenario.file.expect.none_in_custody:
            return True
        return all(in_custody(node) == 0 for node in self.net.nodes.values())

    # === the run ===============================================================================

    def run(self) -> RunRecord:
        started = time.perf_counter()
        plan = sends(self.scenario)
        self._due = self.record.planned = len(plan)
        for send in plan:
            self.net.at(self.t0 + send.at, lambda send=send: self._send(send))
        for index, fault in enumerate(self.scenario.file.fault):
            self.net.at(self.t0 + fault.at, lambda index=index: self._fault(index))
        end = self.t0 + self.scenario.file.duration
        for app in self.scenario.file.app:
            self.record.notes.append(f"app {app.name} not run: virtual time has no node API "
                                     "(run without --virtual)")
        self.net.run_until(end, MAX_STEPS, self._done)
        self.record.duration = self.net.now - self.t0
        self.record.wall_seconds = time.perf_counter() - started
        self._finish()
        return self.record

    def _finish(self) -> None:
        record, t0 = self.record, self.t0
        for name, node in self.net.nodes.items():
            counters = dict(node.agent.counters) if node.agent is not None else {}
            counters["custody_in_flight"] = in_custody(node)
            record.nodes[name] = counters
        record.links = link_records(self.scenario, self.emulator, t0 + record.duration)
        for link, link_record in zip(self.emulator.links, record.links, strict=True):
            for label, sender, receiver in (("a_to_b", link.a.name, link.b.name),
                                            ("b_to_a", link.b.name, link.a.name)):
                direction = self.net.emulated[(sender, receiver)]
                stats, counters = direction.channel.stats, link_record.counters
                counters[f"{label}_datagrams"] = stats.datagrams_in
                counters[f"{label}_bits_flipped"] = stats.bits_flipped
                for reason, count in stats.dropped.items():
                    counters[f"{label}_dropped_{reason}"] = count
                counters[f"{label}_frames_corrected"] = direction.decoder.counters.frames_corrected
        judge(self.scenario, record, path_light_times(self.scenario, record.bundles))


def in_custody(node: VirtualNode) -> int:
    if node.agent is None:
        return 0
    return node.agent.store.count_by_state().get(State.IN_FLIGHT, (0, 0))[0]


def run_virtual(scenario: Scenario, folder: Path) -> RunRecord:
    return VirtualRun(scenario, folder).run()
