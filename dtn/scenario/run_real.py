"""A scenario between real processes on 127.0.0.1: the link emulator and one node daemon per
scenario node on one scaled clock, the traffic sent and taken through `dtn.AsyncClient`, faults
done to the processes (kill -9 and a later restart, an emulator restart).

The clock epoch is set a few wall seconds ahead, so that mission time 0 (the scenario's start,
which its contact windows count from) comes once every process is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import tomli_w

from dtn.client import ApiError, AsyncClient, Event, Received
from dtn.emulator.config import build_config
from dtn.scenario.config import (
    AppTable,
    FaultTable,
    Ports,
    Scenario,
    emulator_document,
    node_document,
    write_run_keys,
)
from dtn.scenario.expect import AppOutcome, judge, judge_apps
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
from dtn.scenario.processes import Network, Process, free_ports
from dtn.scenario.record import BundleRecord, FaultRecord, RunRecord

START_ALLOWANCE = 4.0  # wall seconds from writing the configs to mission time 0
POLL = 0.05  # wall seconds between looks at whether the run is complete


class NodeSession:
    """One node process and the scenario's two API connections to it: `outbox` sends and
    follows its bundles, `inbox` takes deliveries for the node's endpoints."""

    def __init__(self, run: RealRun, name: str, process: Process, endpoints: list[str]) -> None:
        self.run, self.name, self.process, self.endpoints = run, name, process, endpoints
        self.socket = run.net.socket(name, f"{name}.sock")
        self.outbox: AsyncClient | None = None
        self.inbox: AsyncClient | None = None
        self.up = asyncio.Event()
        self.generation = 0  # counts restarts: a connection error of an older one is stale

    async def connect(self) -> None:
        self.outbox = await AsyncClient.connect(self.socket)
        self.inbox = await AsyncClient.connect(self.socket)
        for endpoint in self.endpoints:
            await self.inbox.register(endpoint)
        for record in self.run.bundles_from(self.name):
            if not record.delivered:
                await self.outbox.watch(record.bundle_id)
        self.generation += 1
        self.up.set()

    async def disconnect(self) -> None:
        self.up.clear()
        for client in (self.outbox, self.inbox):
            if client is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    await client.close()

    async def kill(self) -> None:
        await self.disconnect()
        self.process.kill()

    async def restart(self) -> None:
        self.process.start()
        await asyncio.to_thread(self.process.wait_ready)
        await self.connect()

    async def follow(self) -> None:
        """Custody and forwarding events of the bundles sent from this node."""
        while True:
            await self.up.wait()
            try:
                event = await self.outbox.events()
            except ConnectionError:
                await self._lost()
                continue
            if event is not None:
                self.run.on_event(self.name, event)

    async def take(self) -> None:
        """Deliveries to this node's endpoints, each acknowledged once recorded."""
        while True:
            await self.up.wait()
            try:
                item = await self.inbox.receive()
                if item is not None:
                    self.run.on_delivery(item)
                    await self.inbox.ack(item)
            except ConnectionError:
                await self._lost()

    async def _lost(self) -> None:
        """The connection broke: the node was killed (wait for its restart) or failed."""
        generation = self.generation
        if self.up.is_set():  # not a kill fault: those clear `up` first
            state = "running" if self.process.running else "exited"
            raise RuntimeError(f"lost the API connection to {self.name} ({state}): "
                               f"{self.process.tail(3)}")
        while self.generation == generation:
            await asyncio.sleep(POLL)


class RealRun:
    def __init__(self, scenario: Scenario, folder: Path, log_format: str = "json") -> None:
        self.folder = folder
        epoch = time.time() + START_ALLOWANCE
        self.scenario = scenario = scenario.at_epoch(epoch)
        self.epoch, self.scale = epoch, scenario.file.time_scale
        self.record = RunRecord(scenario.name, "real", 0.0,
                                planned=sum(t.count for t in scenario.file.traffic))
        self.records: dict[str, BundleRecord] = {}  # by bundle ID
        self._early: dict[str, list[tuple[str, Event]]] = {}  # events before the ID was known
        self._sent = 0
        ports = {link.link_name: Ports(*free_ports(4)) for link in scenario.file.link}
        write_run_keys(folder)
        self.net = Network(folder, epoch)
        self._configs = {}
        for node in scenario.file.node:
            document = node_document(scenario, node.name, ports, log_format=log_format)
            self._configs[node.name] = self._write(f"{node.name}.toml", document)
        self._emulator_document = emulator_document(scenario, ports)
        self._emulator_config = self._write("emulator.toml", self._emulator_document)
        self.sessions: dict[str, NodeSession] = {}
        self.apps: dict[str, AppOutcome] = {}

    def _write(self, name: str, document: dict) -> Path:
        path = self.folder / name
        path.write_text(tomli_w.dumps(document))
        return path

    # === mission time ==========================================================================

    def now(self) -> float:
        """Mission seconds since the start."""
        return (time.time() - self.epoch) * self.scale

    async def until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, self.epoch + t / self.scale - time.time()))

    # === what the nodes report =================================================================

    def bundles_from(self, node: str) -> list[BundleRecord]:
        return [r for r in self.records.values() if r.source == node]

    def on_event(self, node: str, event: Event) -> None:
        record = self.records.get(event.bundle_id)
        if record is None:  # pushed before the send's reply told us the ID
            self._early.setdefault(event.bundle_id, []).append((node, event))
            return
        at = event.at - self.epoch
        if event.event == "forwarded":
            record.forwarded.append(at)
        elif event.event == "custody_accepted":
            record.custody.append((self._next_hop(node, record), at))

    def _next_hop(self, node: str, record: BundleRecord) -> str:
        path = self.scenario.path_between(node, self.scenario.node_of(record.destination))
        link = path[0]
        return link.b if link.a == node else link.a

    def on_delivery(self, item: Received) -> None:
        record = self.records.get(item.bundle_id)
        if record is not None:
            record.delivered.append(self.now())
            record.intact &= hashlib.sha256(item.data).hexdigest() == record.sha256

    # === traffic and faults ====================================================================

    async def _send_all(self) -> None:
        """Each send on time, whatever the ones before are waiting for (a node down, a full
        store), as independent applications would."""
        sending = []
        for at, group in itertools.groupby(sends(self.scenario), key=lambda send: send.at):
            await self.until(at)
            sending += [asyncio.create_task(self._send(send)) for send in group]
        await asyncio.gather(*sending)

    async def _send(self, send: Send) -> None:
        traffic = send.traffic
        session = self.sessions[traffic.source]
        data = payload(self.scenario, send)
        record = new_record(send, data, self.now())
        self.record.bundles.append(record)  # counted from the first try, whatever comes of it
        while True:
            await session.up.wait()
            record.sent_at = self.now()
            try:
                bundle_id = await session.outbox.send(
                    traffic.to, data, lifetime=traffic.lifetime, custody=traffic.custody,
                    priority=traffic.priority, report=traffic.report, watch=True)
            except ApiError as error:
                record.refused = str(error)
                if error.code != "store_full":
                    break
                record.refusals += 1  # as an application would: try again a little later
                await self.until(self.now() + REFUSED_RETRY)
                continue
            except ConnectionError:
                continue  # killed before it said the bundle was durable: send it again
            record.refused = None
            self.records[bundle_id] = record
            record.bundle_id = bundle_id
            for node, event in self._early.pop(bundle_id, []):
                self.on_event(node, event)
            break
        self._sent += 1

    async def _faults(self) -> None:
        tasks = []
        for fault in sorted(self.scenario.file.fault, key=lambda f: f.at):
            await self.until(fault.at)
            at = self.now()
            if fault.action == "kill":
                await self.sessions[fault.node].kill()
                self.record.faults.append(FaultRecord(at, f"kill -9 {fault.node}"))
                if fault.restart_after is not None:
                    tasks.append(asyncio.create_task(
                        self._restart(fault.node, fault.at + fault.restart_after)))
            elif fault.action == "fill_store":
                tasks.append(asyncio.create_task(self._fill(fault)))
            elif fault.action == "restart_emulator":
                emulator = self.net.processes["emulator"]
                emulator.kill()
                emulator.start()
                await asyncio.to_thread(emulator.wait_ready)
                self.record.faults.append(FaultRecord(at, "emulator restarted"))
            else:
                self.record.faults.append(FaultRecord(
                    at, f"contact {fault.link} cut for {fault.duration / 60:g} min"))
        await asyncio.gather(*tasks)

    async def _fill(self, fault: FaultTable) -> None:
        """Send bundles to the node's fill endpoint until its store refuses one; they wait
        there (nobody registered it) until the fault's duration is over, then are taken."""
        session, table = self.sessions[fault.node], self.scenario.node(fault.node)
        at, count, stored = self.now(), 0, 0
        async with AsyncClient(session.socket) as client:
            for size in FILL_SIZES:
                try:
                    while count < FILL_MAX:
                        await client.send(table.fill_endpoint, filler(size, count), custody=False)
                        count, stored = count + 1, stored + size
                except ApiError as error:
                    if error.code != "store_full":
                        raise
            self.record.faults.append(FaultRecord(at, fill_text(fault.node, count, stored)))
            if fault.duration is None:
                return
            await self.until(fault.at + fault.duration)
            await client.register(table.fill_endpoint)
            taken = 0
            while taken < count and (item := await client.receive(timeout=30.0)) is not None:
                await client.ack(item)
                taken += 1
            self.record.faults.append(FaultRecord(
                self.now(), f"store of {fault.node} emptied ({taken} taken)"))

    async def _restart(self, name: str, at: float) -> None:
        await self.until(at)
        self.record.faults.append(FaultRecord(self.now(), f"restart {name}"))
        await self.sessions[name].restart()

    async def _app(self, app: AppTable) -> None:
        """Run a user's program beside its node, on the run's clock, until it exits or its
        timeout; its output goes to run/app-NAME.log."""
        await self.until(app.at)
        log = self.folder / f"app-{app.name}.log"
        env = dict(self.net.env, DTN_API_SOCKET=self.sessions[app.node].socket,
                   DTN_TIME_SCALE=repr(self.scale))
        with log.open("wb") as output:
            argv = [sys.executable, *app.run[1:]] if app.run[0] == "python" else app.run
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=self.scenario.path.parent, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=asyncio.subprocess.STDOUT)
        outcome = AppOutcome(app.name, None, False, str(log))
        self.apps[app.name] = outcome
        limit = None if app.timeout is None else app.timeout / self.scale
        try:
            code = await asyncio.wait_for(process.wait(), limit)
            self.apps[app.name] = replace(outcome, returncode=code)
        except TimeoutError:
            self.apps[app.name] = replace(outcome, timed_out=True)
        finally:
            if process.returncode is None:  # timed out, or the run is over
                process.kill()
                await process.wait()

    async def _complete(self) -> bool:
        """Everything sent was delivered, every app has finished, and (if expected) no node
        holds custody."""
        if self._sent < self.record.planned:
            return False
        if len(self.apps) < len(self.scenario.file.app) or any(
                a.returncode is None and not a.timed_out for a in self.apps.values()):
            return False
        if not self.record.all_delivered:
            return False
        if not self.scenario.file.expect.none_in_custody:
            return True
        for session in self.sessions.values():
            if not session.up.is_set():
                return False
            if (await session.outbox.status())["custody_in_flight"]:
                return False
        return True

    # === the run ===============================================================================

    async def _main(self) -> None:
        names = [node.name for node in self.scenario.file.node]
        processes = {name: self.net.node(name, self._configs[name]) for name in names}
        self.net.emulator(self._emulator_config)
        await asyncio.to_thread(self.net.wait_ready)
        for node in self.scenario.file.node:
            session = NodeSession(self, node.name, processes[node.name],
                                  node.application_endpoints)
            await session.connect()
            self.sessions[node.name] = session
        workers = [asyncio.create_task(coroutine) for session in self.sessions.values()
                   for coroutine in (session.follow(), session.take())]
        driver = asyncio.gather(self._send_all(), self._faults(),
                                *(self._app(app) for app in self.scenario.file.app))
        try:
            while self.now() < self.scenario.file.duration:
                if driver.done():
                    driver.result()  # a failure in sending or faults ends the run
                    if await self._complete():
                        break
                for worker in workers:
                    if worker.done():
                        worker.result()
                await asyncio.sleep(POLL)
            self.record.duration = self.now()
            await self._collect_counters()
        finally:
            driver.cancel()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(driver, *workers, return_exceptions=True)
            for session in self.sessions.values():
                await session.disconnect()

    async def _collect_counters(self) -> None:
        for name, session in self.sessions.items():
            if not session.up.is_set():
                self.record.nodes[name] = {}
                continue
            status = await session.outbox.status()
            counters = {k: v for k, v in status["agent"].items() if isinstance(v, int)}
            counters["custody_in_flight"] = status["custody_in_flight"]
            self.record.nodes[name] = counters
            for neighbour, link in status["links"].items():
                for key in ("bundles_out", "bundles_in", "datagrams_out", "datagrams_in",
                            "frames_corrected"):
                    self._link_counters(name, neighbour)[f"{name}_{key}"] = link[key]

    def _link_counters(self, node: str, neighbour: str) -> dict[str, int]:
        for record in self.record.links:
            if {record.a, record.b} == {node, neighbour}:
                return record.counters
        return {}

    def run(self) -> RunRecord:
        started = time.perf_counter()
        emulator = build_config(self._emulator_document, self.folder / "emulator.toml")
        self.record.links = link_records(self.scenario, emulator,
                                         self.epoch + self.scenario.file.duration)
        with self.net:
            try:
                asyncio.run(self._main())
            finally:
                self.record.wall_seconds = time.perf_counter() - started
                self.record.logs = {name: str(process.log_path)
                                    for name, process in self.net.processes.items()}
        judge(self.scenario, self.record, path_light_times(self.scenario, self.record.bundles))
        judge_apps([self.apps.get(app.name, AppOutcome(app.name, None, False, "(never started)"))
                    for app in self.scenario.file.app], self.record)
        return self.record


def run_real(scenario: Scenario, folder: Path) -> RunRecord:
    return RealRun(scenario, folder).run()
