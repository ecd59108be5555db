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
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"not ready after {timeout} s:\n{self.log_path.read_text()[-2000:]}")

    def ready(self) -> bool:
        """Whether the server answers yet: ``health_path`` gives 200."""
        try:
            return httpx.get(self.url + self.health_path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, kind, *exc) -> None:
        self.stop()
        if kind is not None:  # a failing test: what the server said goes into its report
            tail = self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
            print(f"--- {self.log_path.name} (last lines) ---\n{tail}", file=sys.stderr)


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


class TcpProxy:
    """A loopback TCP forwarder that a test can cut (``stop``) and restore (``start``):
    the database "goes down" for the processes that connect through it, with every open
    connection dropped, and comes back on the same port."""

    def __init__(self, target: tuple[str, int], latency: float = 0.0):
        import threading

        self.target = target
        #: Seconds each chunk from the server waits before it is passed on: a slow link.
        self.latency = latency
        self.port = free_port()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._hanging = False
        #: Connections accepted so far (hanging ones too): how often the server tried.
        self.accepted = 0

    def hang(self) -> None:
        """Drop every open connection and accept new ones without ever answering (no
        refusal either): a database host that stopped answering."""
        self.stop()
        self.start(hanging=True)

    def start(self, hanging: bool = False) -> None:
        import threading

        self._hanging = hanging

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            self.accepted += 1
            if self._listener is not listener:  # stopped while this one was arriving
                client.close()
                return
            if self._hanging:  # held open, never answered: a host that stopped answering
                self._sockets.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for source, sink, delay in ((client, upstream, 0.0),
                                        (upstream, client, self.latency)):
                threading.Thread(target=self._pipe, args=(source, sink, delay),
                                 daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for open_socket in self._sockets:
            try:
                open_socket.shutdown(socket.SHUT_RDWR)
                open_socket.close()
            except OSError:
                pass
        self._sockets.clear()
