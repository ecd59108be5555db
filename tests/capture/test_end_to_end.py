"""The shipped hook scripts, fed recorded payloads, against a real Daphne (issue 20's
acceptance): the session arrives as the expected ordered events; the server going down
mid-session and coming back loses nothing and duplicates nothing; a planted secret is
in no file of the server's data directory. Also Codex ``notify`` (with an outage
between turns too) and ``manage.py capture``.

The hooks run as an agent runs them: the system ``python3`` (no virtualenv, so nothing
but the standard library), the package's directory as the program, an environment
with only PATH, HOME and the MEMORYWEB_* variables, the default spool under HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.capture.support import SECRET_MARKERS, FakeMemoryWeb, Transcript, payload, session_steps
from tests.helpers.commands import set_up_keys
from tests.servers import ROOT, DaphneServer

#: What agents run hooks with: the system python3, not this virtualenv's.
HOOK_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
PACKAGE = ROOT / "memoryweb_capture"
SESSION = "3f1c2a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c"
THREAD = "b5f6c1c2-4e1d-4a7b-9c3e-0f1a2b3c4d5e"
CLAUDE_EXPECTED = ["session_start", "user_message", "tool_call", "tool_result", "tool_call", "tool_result",
                   "assistant_message", "assistant_stop", "user_message", "assistant_message",
                   "assistant_stop", "session_end"]


@pytest.fixture
def embedded_env(embedded_env: dict[str, str]) -> dict[str, str]:
    """The embedded deployment with a model-free embedder (tests/helpers/hash_embedder.py)
    in every server and command here: the hooks, the spool and the events' order are the
    subject, not the model (no assertion here ranks anything by meaning), whose load in
    each (re)started server costs 0.4 s of CPU or more (measured 2026-12-06)."""
    return {**embedded_env, "MEMORYWEB_EMBEDDER": "tests.helpers.hash_embedder.DistinctHashEmbedder"}


@pytest.fixture
def deployment(embedded_env, tmp_path):
    """A migrated embedded deployment (namespace ``demo`` and its keys) served by Daphne;
    the test may stop and restart the server (same port, same data)."""
    keys = set_up_keys(embedded_env)
    server = DaphneServer(tmp_path / "daphne.log", embedded_env)
    server.start()
    yield server, keys, embedded_env
    server.stop()


def _hook_env(home: Path, url: str, key: str) -> dict[str, str]:
    """A hook's environment. The network budget is raised from 2 s: a server process just
    (re)started loads its embedder on the first write, which on a loaded test machine
    can take longer, and a timed-out hook leaves its events for a later hook (after a
    back-off): correct, but then *when* they arrive would depend on the machine's speed.
    Outages here are refused connections, which fail at once whatever the budget."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "MEMORYWEB_API_KEY": key,
            "MEMORYWEB_SERVER_URL": url, "MEMORYWEB_CAPTURE_TIMEOUT": "60"}


def _hook(env: dict[str, str], *args: str, stdin: str = "", python: str = HOOK_PYTHON,
          module: bool = False) -> subprocess.CompletedProcess:
    """One hook invocation, as the agent makes it; it must exit 0 and print nothing."""
    program = ["-m", "memoryweb_capture"] if module else [str(PACKAGE)]
    extra = {"PYTHONPATH": str(ROOT)} if module else {}
    done = subprocess.run([python, *program, *args], input=stdin, env={**env, **extra},
                          cwd=env["HOME"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout  # Claude Code would add it to the conversation
    return done


def _session_events(url: str, key: str, session: str) -> list[dict]:
    """``GET /api/v1/events?session_id=`` with every page."""
    rows, next_url = [], f"{url}/api/v1/events?session_id={session}&limit=5"
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        while next_url:
            response = client.get(next_url)
            assert response.status_code == 200, response.text
            body = response.json()
            rows += body["results"]
            next_url = body["next"]
    return rows


def _spool_lines(home: Path) -> list[dict]:
    path = home / ".memoryweb" / "spool.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _log(home: Path) -> str:
    path = home / ".memoryweb" / "capture.log"
    return path.read_text() if path.exists() else "(no capture log)"


def _assert_no_secret_in(data_dir: Path) -> None:
    """No planted secret in any file of the server's data directory (SQLite, its WAL,
    the keyword index, Chroma's files)."""
    checked = 0
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            checked += 1
            for marker in SECRET_MARKERS:
                assert marker.encode() not in data, f"{marker[:6]}… found in {path}"
    assert checked


def test_a_claude_code_session_with_an_outage_arrives_once_in_order(deployment, tmp_path):
    server, keys, env = deployment
    home = tmp_path / "home"
    home.mkdir()
    hook_env = _hook_env(home, server.url, keys["agent"])
    transcript = Transcript(tmp_path / f"{SESSION}.jsonl")
    steps = session_steps(transcript.path)

    def fire(index: int) -> None:
        body, lines = steps[index]
        transcript.grow_to(lines)
        _hook(hook_env, "--format", "claude-code", stdin=json.dumps(body))

    for index in range(4):  # SessionStart, the prompt, Bash, Edit
        fire(index)
    fire(3)  # the Edit hook fired twice
    assert [row["event_type"] for row in _session_events(server.url, keys["agent"], SESSION)] == \
        CLAUDE_EXPECTED[:6]

    server.stop()  # the server goes down mid-session
    fire(4)  # Stop
    fire(4)  # ... fired twice while down
    fire(5)  # the second prompt
    spooled = _spool_lines(home)
    assert [line["event"]["event_type"] for line in spooled] == [
        "assistant_message", "assistant_stop", "assistant_message", "assistant_stop", "user_message"]
    assert "server unavailable" in (home / ".memoryweb" / "capture.log").read_text()

    server.start()  # back, on the same port with the same data
    fire(6)  # the second Stop: replays the spool first, then sends its own
    assert _spool_lines(home) == [], _log(home)
    fire(7)  # SessionEnd

    rows = _session_events(server.url, keys["agent"], SESSION)
    assert [row["event_type"] for row in rows] == CLAUDE_EXPECTED
    assert len({row["event_id"] for row in rows}) == len(rows) == 12
    # A tool call is the assistant's (as the server defaults it), its result the tool's.
    assert [row["role"] for row in rows] == ["system", "user", "assistant", "tool", "assistant", "tool",
                                             "assistant", "assistant", "user", "assistant", "assistant",
                                             "system"]
    by_type = {}
    for row in rows:
        by_type.setdefault(row["event_type"], []).append(row)
    assert "[REDACTED:openai]" in by_type["user_message"][0]["content"]
    assert "[REDACTED:aws_access_key_id]" in by_type["user_message"][0]["content"]
    assert by_type["tool_call"][0]["content"] == "Bash: cat config/.env"
    assert "[REDACTED:private_key]" in by_type["tool_result"][0]["content"]
    assert by_type["assistant_message"][1]["content"].startswith("Added tests/test_settings.py")
    assert by_type["session_end"][0]["metadata"]["reason"] == "prompt_input_exit"
    assert all(row["agent_id"] == "agent-bot" and row["session_id"] == SESSION for row in rows)

    spool_dir = home / ".memoryweb"
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((spool_dir / "spool.jsonl").stat().st_mode) == 0o600
    assert not (spool_dir / "spool.rejected.jsonl").exists()
    _assert_no_secret_in(Path(env["MEMORYWEB_DATA_DIR"]))


def test_codex_notify_turns_with_an_outage_arrive_once_in_order(deployment, tmp_path):
    """Codex's ``notify`` through the shipped package, the server down for turn 2 (whose
    notify fires twice while it is down) and back for turn 3, which replays the spool."""
    server, keys, env = deployment
    home = tmp_path / "home"
    home.mkdir()
    hook_env = _hook_env(home, server.url, keys["agent"])

    def notify(number: int) -> None:
        body = json.dumps(payload(f"codex/notify_{number}.json"))
        _hook(hook_env, "--format", "codex", body, module=True)  # Codex appends the JSON argument

    expected = [
        ("user_message", "Rename `load_stock` to `fetch_stock` and update the callsites."),
        ("assistant_message", "Renamed load_stock to fetch_stock in 4 files; `cargo build` succeeds."),
        ("user_message", "Also export GITHUB_TOKEN=[REDACTED:github] in the CI script."),
        ("user_message", "And bump the version to 0.4.2."),
        ("assistant_message", "Added the export to ci/build.sh and bumped Cargo.toml to 0.4.2."),
        ("user_message", "Run the tests."),
        ("assistant_message", "All 58 tests pass."),
    ]
    notify(1)
    rows = _session_events(server.url, keys["agent"], THREAD)
    assert [(row["event_type"], row["content"]) for row in rows] == expected[:2]

    server.stop()  # the server goes down between turns
    notify(2)
    notify(2)  # turn 2's notify fired twice while down
    spooled = _spool_lines(home)
    assert [line["event"]["event_type"] for line in spooled] == ["user_message", "user_message",
                                                                 "assistant_message"] * 2
    assert "server unavailable" in _log(home)
    spool_text = (home / ".memoryweb" / "spool.jsonl").read_text()  # redacted before it is spooled
    assert spool_text.count("[REDACTED:github]") == 2
    assert not [marker for marker in SECRET_MARKERS if marker in spool_text]

    server.start()  # back, on the same port with the same data
    notify(3)  # replays the spool first, then sends its own turn
    assert _spool_lines(home) == [], _log(home)

    rows = _session_events(server.url, keys["agent"], THREAD)
    assert [(row["event_type"], row["content"]) for row in rows] == expected
    assert len({row["event_id"] for row in rows}) == len(rows) == 7
    assert all(row["agent_id"] == "agent-bot" and row["session_id"] == THREAD for row in rows)
    assert not (home / ".memoryweb" / "spool.rejected.jsonl").exists()
    _assert_no_secret_in(Path(env["MEMORYWEB_DATA_DIR"]))


def test_manage_py_capture_sends_json_lines_and_reports(deployment, tmp_path):
    server, keys, env = deployment
    lines = [{"event_type": "session_start", "session_id": "cli-1"},
             {"event_type": "user_message", "session_id": "cli-1", "text": "Where do backups go?"},
             {"event_type": "assistant_message", "session_id": "cli-1",
              "text": "To s3://backups, password=hunter2 is in the vault."}]
    command_env = {**env, "HOME": str(tmp_path / "home"), "MEMORYWEB_API_KEY": keys["agent"]}

    def capture(stdin: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
        # --timeout: what is tested here is sending and the report, not the hook's 2-second
        # budget (the outage tests cover that): a loaded CI machine's first store took longer.
        return subprocess.run([sys.executable, "manage.py", "capture", "--server-url", server.url,
                               "--format", "jsonl", "--timeout", "30"], input=stdin, cwd=ROOT,
                              env=environ, capture_output=True, text=True, timeout=120)

    done = capture("\n".join(json.dumps(line) for line in lines), command_env)
    assert done.returncode == 0, done.stderr
    assert "sent 3 (stored 3, existing 0)" in done.stdout
    rows = _session_events(server.url, keys["agent"], "cli-1")
    assert [row["event_type"] for row in rows] == ["session_start", "user_message", "assistant_message"]
    assert rows[2]["content"] == "To s3://backups, password=[REDACTED:credential] is in the vault."

    again = capture(json.dumps(lines[1]), command_env)  # the same line again: stored once
    assert again.returncode == 0 and "existing 1" in again.stdout

    refused = capture('{"event_type": "user_message", "session_id": "cli-1"}', command_env)
    assert refused.returncode == 1
    assert "text is required for user_message" in refused.stderr

    no_key = capture(json.dumps(lines[1]), {k: v for k, v in command_env.items() if k != "MEMORYWEB_API_KEY"})
    assert no_key.returncode == 2 and "MEMORYWEB_API_KEY is not set" in no_key.stderr
    assert len(_session_events(server.url, keys["agent"], "cli-1")) == 3


def _python_3_9() -> str | None:
    """A Python 3.9 interpreter (pyenv's, else one on PATH that is no pyenv shim)."""
    candidates = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.9*/bin/python3"))
    if candidates:
        return str(candidates[-1])
    found = shutil.which("python3.9")
    return found if found and "shims" not in found else None


@pytest.mark.processes
@pytest.mark.skipif(_python_3_9() is None, reason="no Python 3.9 on this machine to check the oldest "
                    "supported hook interpreter")
def test_the_hooks_run_on_python_3_9(tmp_path):
    """The oldest python3 the hooks support runs the recorded session (against the fake
    server: the interpreter is under test here, not the server)."""
    home = tmp_path / "home"
    home.mkdir()
    transcript = Transcript(tmp_path / "t.jsonl")
    with FakeMemoryWeb() as fake:
        hook_env = _hook_env(home, fake.url, "test-key")
        for body, lines in session_steps(transcript.path):
            transcript.grow_to(lines)
            _hook(hook_env, "--format", "claude-code", stdin=json.dumps(body), python=_python_3_9())
    assert [e["event_type"] for e in fake.stored] == CLAUDE_EXPECTED
