"""Real processes on one scaled clock: the link emulator and node daemons, each a subprocess
started with `python -m dtn.cli`, logging to a file in the run's folder.

Every process gets the same DTN_CLOCK_EPOCH, so they agree on mission time. `stop()` ends what
this object started (SIGTERM, then SIGKILL after a grace period), also when the caller fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dtn.clock import EPOCH_ENV

READY = {"emulate": "emulator ready", "node": "node ready"}
START_TIMEOUT = 20.0  # wall seconds for a process to say it is ready
STOP_GRACE = 10.0


class ProcessError(RuntimeError):
    """A process did not start, or stopped with an error; the message quotes its log."""


class Process:
    def __init__(self, name: str, kind: str, argv: list[str], log: Path, env: dict) -> None:
        self.name, self.kind, self.argv, self.log_path, self.env = name, kind, argv, log, env
        self.popen: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self._log_offset = log.tell()
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.env)
        log.close()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        marker = READY[self.kind].encode()
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                if marker in log.read():
                    return
            if self.popen.poll() is not None:
                raise ProcessError(f"{self.name} exited with {self.popen.returncode}: "
                                   f"{self.tail()}")
            time.sleep(0.02)
        raise ProcessError(f"{self.name} not ready after {timeout} s: {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return " | ".join(text[-lines:])

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


class Network:
    """The processes of one run, sharing a folder and a clock epoch."""

    def __init__(self, folder: Path, epoch: float | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.epoch = time.time() if epoch is None else epoch
        self.env = dict(os.environ, **{EPOCH_ENV: repr(self.epoch)})
        self.env.pop("DTN_API_SOCKET", None)
        self.processes: dict[str, Process] = {}

    def emulator(self, config: Path, name: str = "emulator") -> Process:
        return self._add(name, "emulate", ["emulate", "-c", str(config)])

    def node(self, name: str, config: Path, *extra: str) -> Process:
        data = self.folder / name
        data.mkdir(exist_ok=True)
        return self._add(name, "node", ["node", "run", "-c", str(config), "--data-dir",
                                        str(data), *extra])

    def socket(self, name: str, file_name: str) -> str:
        return str(self.folder / name / file_name)

    def _add(self, name: str, kind: str, args: list[str]) -> Process:
        argv = [sys.executable, "-m", "dtn.cli", *args]
        process = Process(name, kind, argv, self.folder / f"{name}.log", self.env)
        self.processes[name] = process
        process.start()
        return process

    def wait_ready(self) -> None:
        for process in self.processes.values():
            process.wait_ready()

    def stop(self) -> dict[str, int | None]:
        return {name: process.stop() for name, process in reversed(self.processes.items())}

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def private_copy(source: Path, folder: Path) -> Path:
    """Copy a key file into `folder` readable by its owner only (as key files must be)."""
    target = folder / source.name
    shutil.copyfile(source, target)
    target.chmod(0o600)
    return target


def copy_configs(sources: list[Path], folder: Path, ports: dict[int, int] | None = None,
                 keyfile: Path | None = None) -> list[Path]:
    """Copy configs into `folder`, moving the ports named in `ports` (old -> new), and the key
    file they use, private. Returns the copies' paths."""
    copies = []
    for source in sources:
        text = source.read_text()
        for old, new in (ports or {}).items():
            text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        target = folder / source.name
        target.write_text(text)
        copies.append(target)
    if keyfile is not None:
        private_copy(keyfile, folder)
    return copies


def free_ports(count: int, kind: str = "udp") -> list[int]:
    """Ports free on 127.0.0.1 just now (for tests that must not collide with a demo)."""
    import socket

    family = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    sockets = [socket.socket(socket.AF_INET, family) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
