"""What the capture tests share: the recorded payloads with their planted secrets, and a
fake MemoryWeb on loopback for the client's unit tests (the end-to-end tests use Daphne).

The secrets are planted at run time from fragments (``${PLANTED_…}`` in the fixtures):
the repository holds no string a secret scanner would take for a real key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers import free_port

__all__ = ["FIXTURES", "PLANTED", "SECRET_MARKERS", "FakeMemoryWeb", "Transcript", "free_port", "payload",
           "plant", "session_steps"]

FIXTURES = Path(__file__).resolve().parent / "fixtures"

_PEM_BODY = ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
             "QyNTUxOQAAACDxq4mZ0lP3Xw9s8V2aR7cT1nK5bY6hJ0eL4uQ2oWfSgAAAJiF1m3ghdZt")
_PEM = ("-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + _PEM_BODY + "\n-----END " + "OPENSSH PRIVATE KEY-----")
PLANTED = {
    "PLANTED_OPENAI": "sk-" + "proj-" + "Q3vX9kLm2Np8Rt5Wz1Yb4Hc7Jd0Fg6Ks3Ae9Ub2",
    "PLANTED_AWS_ID": "AKIA" + "Z7QP4MXN2KDL8RWT",
    "PLANTED_AWS_SECRET": "9vQx2LmN8pR4tW7yZ1bC5dF0gH3jK6nM8qS2uV4x",
    "PLANTED_DB_PASSWORD": "Hunter2" + "Pass",
    "PLANTED_PEM": _PEM,
    "PLANTED_PEM_ESCAPED": _PEM.replace("\n", "\\n"),
    "PLANTED_GITHUB": "gh" + "p_" + "R8s2Kx9LmQ4vN7bW1zY5tH3jC6fD0gA2eU8p",
}
#: Parts of the planted secrets that must appear nowhere after capture (each unique to
#: its secret: a shorter part could occur by chance).
SECRET_MARKERS = ["Q3vX9kLm2Np8Rt5Wz1Yb4Hc7Jd0Fg6Ks3Ae9Ub2", "Z7QP4MXN2KDL8RWT",
                  "9vQx2LmN8pR4tW7yZ1bC5dF0gH3jK6nM8qS2uV4x", "Hunter2Pass",
                  "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE", "QyNTUxOQAAACDxq4mZ0lP3Xw9s8V2aR7cT1nK5bY6",
                  "R8s2Kx9LmQ4vN7bW1zY5tH3jC6fD0gA2eU8p"]


def plant(value: Any) -> Any:
    """A fixture value with its ``${PLANTED_…}`` placeholders filled in."""
    if isinstance(value, str):
        for name, secret in PLANTED.items():
            value = value.replace("${" + name + "}", secret)
        return value
    if isinstance(value, dict):
        return {key: plant(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plant(item) for item in value]
    return value


def payload(name: str) -> dict[str, Any]:
    """A recorded payload (``claude_code/05_stop.json``, ``codex/notify_1.json``), planted."""
    return plant(json.loads((FIXTURES / name).read_text()))


def claude_session() -> dict[str, Any]:
    return json.loads((FIXTURES / "claude_code" / "session.json").read_text())


def transcript_lines() -> list[dict[str, Any]]:
    text = (FIXTURES / "claude_code" / "transcript.jsonl").read_text()
    return [plant(json.loads(line)) for line in text.splitlines() if line.strip()]


class Transcript:
    """The recorded transcript written out as the session goes: ``grow_to(n)`` appends
    lines up to the n-th, each stamped with the time it is written (the recording's
    times would sort before the events captured "now")."""

    def __init__(self, path: Path):
        self.path = path
        self.lines = transcript_lines()
        self.written = 0
        path.write_text("")

    def grow_to(self, count: int) -> None:
        with self.path.open("a") as handle:
            while self.written < count:
                entry = dict(self.lines[self.written])
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                entry["timestamp"] = now.replace("+00:00", "Z")
                handle.write(json.dumps(entry) + "\n")
                self.written += 1


def session_steps(transcript_path: Path) -> list[tuple[dict[str, Any], int]]:
    """The recorded Claude Code session: (payload pointing at ``transcript_path``, the
    transcript's line count when that hook fired), in the order the hooks fired."""
    steps = []
    for step in claude_session()["steps"]:
        body = payload("claude_code/" + step["payload"])
        body["transcript_path"] = str(transcript_path)
        steps.append((body, step["transcript_lines"]))
    return steps


class FakeMemoryWeb:
    """``POST /api/v1/events`` on loopback, for the client's unit tests: it keeps what it
    stored (each id once, as the real server does) and answers as ``respond`` says
    (``(status, body, headers)`` or None for the normal 201/200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stored: list[dict[str, Any]] = []
        self.respond: Callable[[list[dict[str, Any]]], tuple[int, Any, dict[str, str]] | None] = \
            lambda events: None
        self.delay = threading.Event()  # set: answers wait until released (a hanging server)
        self.release = threading.Event()
        self.trickle = False  # True: the answer's body comes one byte per 0.1 s
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                events = body.get("events", [])
                with fake._lock:
                    fake.requests.append({"path": self.path, "events": events,
                                          "authorization": self.headers.get("Authorization")})
                if fake.delay.is_set():
                    fake.release.wait(30)
                answer = fake.respond(events)
                if answer is None:
                    answer = fake._store(events)
                status, payload, headers = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if fake.trickle:
                        for index in range(len(data)):
                            self.wfile.write(data[index:index + 1])
                            self.wfile.flush()
                            if fake.release.wait(0.1):
                                break
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def _store(self, events: list[dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            known = {event["id"] for event in self.stored}
            results = []
            for event in events:
                created = event["id"] not in known
                if created:
                    self.stored.append(event)
                    known.add(event["id"])
                results.append({"id": event["id"], "memory_id": event["id"], "created": created})
        stored = sum(result["created"] for result in results)
        return (201 if stored else 200), {"results": results, "stored": stored,
                                          "existing": len(results) - stored}, {}

    def __enter__(self) -> FakeMemoryWeb:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
