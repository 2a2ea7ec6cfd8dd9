"""Live LTP interoperability with NASA ION 4.1.3: one ION node (ipn:3, LTP engine 3, udplsi
and udplso on 127.0.0.1, bpsink on ipn:3.1, an ipn plan to node 2 over LTP) and one
`dtn node run` (ipn:2.0, an `ltp` neighbour ipn:3.0, real time). Then

  (a) our node sends bundles to ipn:3.1 and ION's bpsink must print their payload lengths;
  (b) ION's bpsource sends to ipn:2.1 and our node must deliver them to a registered client.

One PASS/FAIL line a direction, with ION's complaints from its ion.log ("[?]" lines) and our
node's link and datagram-endpoint counters.

    python -m tools.interop.ion_ltp            # ION built at $ION_PREFIX (default /tmp/ion)
    python -m tools.interop.ion_ltp --relay    # through a UDP relay (see below)
    python -m tools.interop.ion_ltp --keep     # keep the work folder (logs, configs)

ION's udplso sends from a socket of its own (INADDR_ANY, a port the OS chooses,
ltp/udp/udplso.c), not from udplsi's port. `--relay` puts a one-socket relay in between: the
node's neighbour `address` is the relay's port, udplso sends to it too, and what ION sends
reaches the node *from* that address. It shows whether LTP itself interoperates once the
source address is out of the way.

ION's node config: tools/interop/ion-ltp-node/ (ports filled in per run). ION must be built
first (../shared/peers/build-ion.sh). Exit 0 only if both directions pass.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dtn.client import Client
from dtn.scenario.processes import free_ports

HERE = Path(__file__).resolve().parent
ION_NODE = HERE / "ion-ltp-node"
ROOT = HERE.parent.parent

# (a): sizes of the payloads sent to ION: one segment, several segments, several blocks' worth
SIZES_TO_ION = (5, 3000, 20_000, 100_000)
TEXTS_FROM_ION = ("hello from ION over LTP", "second bundle from ION")
WAIT = 30.0  # seconds either direction may take


def node_toml(listen: int, address: int, relay: bool) -> str:
    return f"""
# Our side of tools/interop/ion_ltp.py{" (through the relay)" if relay else ""}.
[node]
id = "ipn:2.0"
[clock]
time_scale = 1
[store]
path = "node.db"
synchronous = "NORMAL"
[api]
socket = "node.sock"
[log]
level = "debug"
[[neighbour]]
name = "ion"
cla = "ltp"
node_id = "ipn:3.0"
custody = false
listen = "127.0.0.1:{listen}"
address = "127.0.0.1:{address}"
light_time = "1s"
[neighbour.ltp]
engine_id = 3
local_engine_id = 2
segment_size = 1024
aggregation_size = "64KiB"
aggregation_time = "1s"
timeout_margin = "2s"
[[route]]
pattern = "ipn:3.*"
via = ["ion"]
"""


class Relay:
    """One UDP socket: datagrams from the node go to ION's udplsi, all others (ION's udplso,
    from whatever port) go to the node, sent from this socket."""

    def __init__(self, port: int, node_port: int, ion_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.node = ("127.0.0.1", node_port)
        self.ion = ("127.0.0.1", ion_port)
        self.sources: set[tuple[str, int]] = set()
        self.counts = {"to_ion": 0, "to_node": 0}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                data, source = self.sock.recvfrom(70_000)
            except OSError:
                continue
            if source == self.node:
                self.sock.sendto(data, self.ion)
                self.counts["to_ion"] += 1
            else:
                self.sources.add(source)
                self.sock.sendto(data, self.node)
                self.counts["to_node"] += 1

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class IonNode:
    """ION node 3 in `folder`, started with its ionstart and stopped with its ionstop; the
    shared memory and POSIX semaphores it made are removed afterwards."""

    def __init__(self, prefix: Path, folder: Path, ion_port: int, dtn_port: int) -> None:
        self.folder = folder
        shutil.copytree(ION_NODE, folder)
        ltprc = folder / "node.ltprc"
        ltprc.write_text(
            ltprc.read_text()
            .replace("@ION_PORT@", str(ion_port))
            .replace("@DTN_PORT@", str(dtn_port))
        )
        self.env = os.environ | {
            "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": str(prefix / "lib"),
            "ION_NODE_LIST_DIR": str(folder.parent / "nodelist"),
        }
        Path(self.env["ION_NODE_LIST_DIR"]).mkdir(exist_ok=True)
        self.shm_before = _shm_ids()
        self.sem_before = set(Path("/dev/shm").glob("sem.ion:*"))
        self.sink: subprocess.Popen | None = None
        self.sink_log = folder.parent / "bpsink.log"

    def start(self) -> None:
        self._script("ionstart")
        with open(self.sink_log, "wb") as out:  # the child keeps its own descriptor
            self.sink = subprocess.Popen(
                ["bpsink", "ipn:3.1"],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _script(self, name: str) -> None:
        """Run one of the node folder's ION scripts, its output to NAME.log beside it."""
        with open(self.folder.parent / f"{name}.log", "wb") as out:
            subprocess.run([f"./{name}"], cwd=self.folder, env=self.env, stdout=out,
                           stderr=subprocess.STDOUT, timeout=60, check=False)

    def run(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv),
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def log(self) -> str:
        path = self.folder / "ion.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self) -> list[int]:
        text = self.sink_log.read_text(errors="replace") if self.sink_log.exists() else ""
        return [int(n) for n in re.findall(r"payload length is (\d+)", text)]

    def stop(self) -> None:
        if self.sink is not None and self.sink.poll() is None:
            self.sink.send_signal(signal.SIGINT)  # bpsink stops on SIGINT
            try:
                self.sink.wait(5)
            except subprocess.TimeoutExpired:
                self.sink.kill()
                self.sink.wait()
        self._script("ionstop")
        time.sleep(2)
        for shmid in _shm_ids(unattached=True) - self.shm_before:
            subprocess.run(["ipcrm", "-m", shmid], capture_output=True, check=False)
        for sem in set(Path("/dev/shm").glob("sem.ion:*")) - self.sem_before:
            sem.unlink(missing_ok=True)


def _shm_ids(unattached: bool = False) -> set[str]:
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=False).stdout
    ids = set()
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[1].isdigit() and (not unattached or cols[5] == "0"):
            ids.add(cols[1])
    return ids


class OurNode:
    def __init__(self, folder: Path, toml: str) -> None:
        folder.mkdir()
        self.folder = folder
        self.config = folder / "node.toml"
        self.config.write_text(toml)
        self.socket = folder / "node.sock"
        self.log_path = folder / "node.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        dtn = Path(sys.executable).parent / "dtn"
        argv = [str(dtn)] if dtn.exists() else [sys.executable, "-m", "dtn.cli"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv + ["node", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    with Client(self.socket, timeout=5) as client:
                        client.hello()
                    return
                except (ConnectionError, OSError):
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"our node did not start: {self.log_path.read_text()[-2000:]}")

    def status(self) -> dict:
        try:
            with Client(self.socket, timeout=5) as client:
                return client.status()
        except (ConnectionError, OSError, TimeoutError) as exc:
            return {"error": str(exc)}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def complaints(log: str, since: int = 0) -> list[str]:
    return [line.split("] ", 1)[-1].strip() for line in log[since:].splitlines() if "[?]" in line]


def counters_line(status: dict) -> str:
    link = status.get("links", {}).get("ion", {})
    keep = {k: v for k, v in link.items() if isinstance(v, int) and v and k != "queued_bytes"}
    cla = {
        k: v
        for e in status.get("cla", {}).values()
        if isinstance(e, dict)
        for k, v in e.items()
        if v
    }
    return f"link {keep}; endpoint {cla}; queued {link.get('queued_bytes')}"


def to_ion(ion: IonNode, ours: OurNode) -> tuple[bool, str]:
    mark = len(ion.log())
    # random bytes: our payload pipeline would compress repetitive data (block 222), which ION
    # does not know and so delivers still compressed
    payloads = [os.urandom(n) for n in SIZES_TO_ION]
    with Client(ours.socket, timeout=10) as client:
        for data in payloads:
            client.send("ipn:3.1", data, custody=False, lifetime=3600)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and len(ion.delivered()) < len(payloads):
        time.sleep(0.5)
    time.sleep(3)  # LTP's report, report-ack after the last block
    got = ion.delivered()
    ok = sorted(got) == sorted(SIZES_TO_ION)
    if not ok and sorted(set(got)) == sorted(SIZES_TO_ION):
        detail_dup = "every payload delivered, some more than once: "
    else:
        detail_dup = ""
    said = "; ".join(complaints(ion.log(), mark)) or "nothing wrong"
    detail = (
        f"{detail_dup}sent payloads {list(SIZES_TO_ION)}, bpsink printed lengths {got}; "
        f"ION says: {said}; ours: {counters_line(ours.status())}"
    )
    return ok, detail


def from_ion(ion: IonNode, ours: OurNode) -> tuple[bool, str]:
    mark = len(ion.log())
    got: list[bytes] = []
    errors = []
    with Client(ours.socket, timeout=10) as client:
        client.register("ipn:2.1")
        for text in TEXTS_FROM_ION:
            done = ion.run("bpsource", "ipn:2.1", text)
            if done.returncode:
                errors.append(f"bpsource exit {done.returncode}: {done.stdout!r} {done.stderr!r}")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and len(got) < len(TEXTS_FROM_ION):
            received = client.receive(timeout=max(0.1, deadline - time.monotonic()))
            if received is None:
                break
            got.append(bytes(received.data))
            received.ack()
    ok = sorted(got) == sorted(t.encode() for t in TEXTS_FROM_ION)
    said = "; ".join(complaints(ion.log(), mark)) or "nothing wrong"
    detail = (
        f"bpsource sent {list(TEXTS_FROM_ION)}, our client received "
        f"{[g.decode(errors='replace') for g in got]}; {' '.join(errors)}"
        f"ION says: {said}; ours: {counters_line(ours.status())}"
    )
    return ok, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--relay",
        action="store_true",
        help="ION's datagrams reach our node from its neighbour address",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    prefix = Path(os.environ.get("ION_PREFIX", "/tmp/ion"))
    if not (prefix / "bin" / "ionadmin").exists():
        print(f"no ION at {prefix}: run ../shared/peers/build-ion.sh first")
        return 2
    work = Path(tempfile.mkdtemp(prefix="ion-ltp."))
    ion_port, dtn_port, relay_port = free_ports(3)
    relay = Relay(relay_port, dtn_port, ion_port) if args.relay else None
    # without the relay, the node sends to udplsi and expects ION's datagrams from there too
    address = relay_port if relay else ion_port
    ion = IonNode(prefix, work / "ion", ion_port, relay_port if relay else dtn_port)
    ours = OurNode(work / "dtn", node_toml(dtn_port, address, bool(relay)))
    print(
        f"ION ipn:3 (engine 3) udplsi 127.0.0.1:{ion_port}; our ipn:2.0 (engine 2) on "
        f"127.0.0.1:{dtn_port}"
        + (f"; relay 127.0.0.1:{relay_port}" if relay else "")
        + f"; work {work}"
    )
    results = []
    try:
        ion.start()
        ours.start()
        time.sleep(2)
        for name, check in (("ours -> ION ", to_ion), ("ION -> ours ", from_ion)):
            try:
                ok, detail = check(ion, ours)
            except Exception as exc:  # noqa: BLE001 - report it as a failure of that direction
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            results.append(ok)
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        dropped = sum(
            e.get("unknown_peer", 0)
            for e in ours.status().get("cla", {}).values()
            if isinstance(e, dict)
        )
        if dropped:
            print(
                f"note: our node dropped {dropped} datagrams as unknown_peer: they came from "
                "an address other than the neighbour's `address` (ION's udplso sends from "
                "an ephemeral port of its own); try --relay"
            )
    finally:
        ours.stop()
        ion.stop()
        if relay:
            print(f"relay: {relay.counts}, ION's datagrams came from {sorted(relay.sources)}")
            relay.close()
        left = complaints(ion.log())
        if left:
            print("all of ION's complaints this run:")
            for line in left:
                print(f"  {line}")
        if not args.keep and all(results) and len(results) == 2:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs: {work} (ion/ion.log, bpsink.log, dtn/node.log)")
    return 0 if len(results) == 2 and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
