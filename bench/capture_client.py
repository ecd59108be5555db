"""bench/capture.py's client side: the capture client as an agent runs it (one process
per invocation, its own key, spool and working directory), the interpreter-start floors
sampled between hooks, and ``-X importtime`` of the client's imports.

A module of its own so the command (bench/capture.py) stays the run; the server side
(``Run``) is there.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from memoryweb_capture.client import Settings  # stdlib only; bench/capture.py puts the repo on sys.path

REPO = Path(__file__).resolve().parent.parent
HOOK_SCRIPT = REPO / "memoryweb_capture"


class Capture:
    """One client identity: a key, a spool, an agent's working directory."""

    def __init__(self, python: str, work: Path, url: str, key: str, timeout: float | None):
        self.python, self.work = python, work
        work.mkdir(parents=True, exist_ok=True)
        self.spool = work / "spool.jsonl"
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "LANG": "C.UTF-8",
                    "MEMORYWEB_SERVER_URL": url, "MEMORYWEB_API_KEY": key,
                    "MEMORYWEB_CAPTURE_SPOOL": str(self.spool)}
        if timeout is not None:
            self.env["MEMORYWEB_CAPTURE_TIMEOUT"] = str(timeout)

    def run(self, args: list[str], stdin: bytes = b"") -> float:
        """One invocation, the documented way (python3 /path/to/memoryweb_capture ...); wall s."""
        start = time.perf_counter()
        proc = subprocess.run([self.python, str(HOOK_SCRIPT), *args], input=stdin, env=self.env,
                              cwd=self.work, capture_output=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or proc.stdout:
            raise RuntimeError(f"capture exited {proc.returncode}, stdout {proc.stdout[:200]!r}, "
                               f"stderr {proc.stderr[-500:]!r}")
        return wall

    def pending(self) -> int:
        """Events waiting in the spool, as the client counts them (its head offset: sent
        lines stay in the file until it is compacted)."""
        from memoryweb_capture.spool import Spool

        if not self.spool.exists():
            return 0
        return Spool(Settings.from_env(self.env)).status().events

    def log_lines(self, last: int = 8) -> list[str]:
        """The client's own account (capture.log), connection-refused lines left out."""
        path = self.work / "capture.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return [line[:300] for line in lines if "Connection refused" not in line][-last:]

    def flush(self) -> tuple[float, int]:
        """``--flush`` until the spool is empty (30 s budget each); wall s and invocations."""
        wall, runs = 0.0, 0
        while self.pending():
            wall += self.run(["--flush"])
            runs += 1
            if runs > 100:
                raise RuntimeError(f"spool {self.spool} does not drain")
        return wall, runs


class Floors:
    """Interpreter start (``-c pass``) and start + the client's imports, sampled between hooks."""

    def __init__(self, python: str):
        self.python = python
        self.samples: dict[str, list[float]] = {"python_start": [], "python_start_import": []}
        self.env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}

    def sample(self, which: str) -> None:
        code = "pass" if which == "python_start" else "import memoryweb_capture.cli"
        start = time.perf_counter()
        subprocess.run([self.python, "-c", code], env=self.env, check=True, capture_output=True)
        self.samples[which].append(time.perf_counter() - start)


def import_profile(python: str, top: int = 12) -> list[dict[str, Any]]:
    """``-X importtime`` of the client's imports: the modules that cost the hook most
    (cumulative µs, the median of 5 runs), for the part of its wall that is not the network."""
    runs: list[dict[str, int]] = []
    for _ in range(5):
        err = subprocess.run([python, "-X", "importtime", "-c", "import memoryweb_capture.cli"],
                             env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, check=True).stderr
        cumulative = {}
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                cumulative[parts[2].strip()] = int(parts[1])
        runs.append(cumulative)
    names = sorted(runs[0], key=lambda n: -runs[0][n])[:top]
    return [{"module": n, "cumulative_us": int(np.median([r.get(n, 0) for r in runs]))} for n in names]
