"""Real server processes for tests: Daphne serving MemoryWeb, and a Chroma server.

Each runs as a subprocess on a free loopback port, logs to a file in the test's tmp
dir (never an unread pipe, which would block the server once full), and is stopped
by the test that started it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Start a command, wait until ``health_path`` answers 200, stop it on exit."""

    health_path = "/"

    def __init__(self, log_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command()[0]} exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"not ready after {timeout} s:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class DaphneServer(ServerProcess):
    health_path = "/readiness"

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                "memoryweb.asgi:application"]


class ChromaServer(ServerProcess):
    health_path = "/api/v2/heartbeat"

    def __init__(self, path: Path, log_path: Path):
        super().__init__(log_path)
        self.path = path

    def command(self) -> Sequence[str]:
        return [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(self.path),
                "--host", "127.0.0.1", "--port", str(self.port)]
