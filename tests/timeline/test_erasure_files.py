"""An erased event leaves no copy of its text in any file of the data directory, also
after timeline builds have copied it into summaries and grip excerpts and rebuilt them
(issue 20, item 6). The write path's secure deletes used to end with ``PRAGMA
secure_delete = OFF``, which switched off this build of SQLite's default (on) for the rest
of a long-lived connection: the builds' later updates and deletes then left stale copies
in free space that a certified erasure did not reach. Every embedded connection now opens
with ``secure_delete`` on, and the secure-delete block restores what it found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.commands import set_up_keys
from tests.servers import DaphneServer

REPO = Path(__file__).resolve().parents[2]
SECRET = "Zebulon quartzite flamingo ledger 7741 overdue"


@pytest.fixture
def deployment(embedded_env, tmp_path):
    keys = set_up_keys(embedded_env)
    server = DaphneServer(tmp_path / "daphne.log", embedded_env)
    server.start()
    yield server, keys, embedded_env
    server.stop()


def _rollup(env: dict[str, str], *extra: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", "rollup", "--namespace", "demo", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _event(number: int, text: str, second: int) -> dict:
    return {"id": f"e{number}", "event_type": "user_message", "session_id": "s",
            "occurred_at": f"2024-03-01T09:00:{second:02d}Z", "text": text}


@pytest.mark.processes
def test_an_erased_event_leaves_no_copy_after_builds_and_rebuilds(deployment):
    server, keys, env = deployment

    def client(role: str) -> httpx.Client:
        return httpx.Client(base_url=server.url, timeout=120,
                            headers={"Authorization": f"Bearer {keys[role]}"})

    agent, admin, system = client("agent"), client("admin"), client("system")
    stored = agent.post("/api/v1/events", json={"events": [
        _event(0, "We planned the release train for Thursday.", 0),
        _event(1, f"{SECRET} was mentioned by Quentin.", 1),
        _event(2, "The release train left on time.", 2)]})
    assert stored.status_code == 201, stored.text
    target = stored.json()["results"][1]["memory_id"]
    _rollup(env)  # the text goes into segment, day, week, month and year summaries
    more = agent.post("/api/v1/events", json={"events": [_event(9, "Another turn that day.", 9)]})
    assert more.status_code == 201, more.text
    _rollup(env)  # the day's nodes rebuilt: their old rows updated or replaced
    _rollup(env, "--rebuild")
    node = admin.get("/api/v1/timeline?level=year").json()["results"][0]
    assert "Zebulon" in node["summary"]

    request = admin.post("/api/v1/erasure-requests", json={"ids": [target], "reason": "t"})
    assert request.status_code == 201, request.text
    request_id = request.json()["id"]
    assert system.post(f"/api/v1/erasure-requests/{request_id}/approve").status_code == 200
    executed = system.post(f"/api/v1/erasure-requests/{request_id}/execute")
    assert executed.status_code == 200 and executed.json()["state"] == "executed", executed.text
    assert executed.json()["certificate"]["verification"]["rollups"]["ok"] is True
    server.stop()

    data_dir = Path(env["MEMORYWEB_DATA_DIR"])
    checked = 0
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            checked += 1
            assert SECRET.encode() not in path.read_bytes(), f"the erased text is in {path}"
    assert checked
