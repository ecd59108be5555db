"""bench/capture.py's workload: synthetic Claude Code sessions (hook payloads and the
transcript lines each hook finds on disk), the events they become (converted and redacted
as the client does) and the same texts as plain memories.

A module of its own so the command (bench/capture.py) stays the run: the servers, the
series' turns, the outage and the budget probe.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.corpus import PEOPLE, PROJECTS, _fields, generate_memories
from memoryweb_capture.client import redact_event  # stdlib only; bench/capture.py puts the repo on sys.path
from memoryweb_capture.events import convert


def _output(rng: random.Random, f: dict[str, Any]) -> str:
    """A tool's output: log lines, test results or a file, 100 to ~5,000 characters (the
    client keeps 2,000); one in 20 holds a credential assignment for redaction to catch."""
    kind = rng.choice(("log", "tests", "file", "grep"))
    lines = []
    for i in range(rng.randint(2, 60)):
        if kind == "log":
            level = rng.choice(("INFO", "WARN", "ERROR"))
            lines.append(f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T{rng.randint(10, 23)}:"
                         f"{rng.randint(10, 59)}:{rng.randint(10, 59)}Z {level} "
                         f"{f['proj'].lower()}-api request {rng.randint(1000, 99999)} took "
                         f"{rng.randint(2, 4000)} ms ({f['tool']})")
        elif kind == "tests":
            lines.append(f"tests/test_{f['task'].replace(' ', '_')}.py::test_case_{i} "
                         f"{rng.choice(('PASSED', 'PASSED', 'PASSED', 'FAILED'))}")
        elif kind == "file":
            lines.append(f"    {f['task'].replace(' ', '_')}_{i} = settings.get('{f['proj'].upper()}_{i}', "
                         f"{rng.randint(1, 500)})  # owner: {rng.choice(PEOPLE)}")
        else:
            lines.append(f"src/{f['proj'].lower()}/{f['task'].replace(' ', '_')}.py:{rng.randint(1, 900)}: "
                         f"# {rng.choice(PEOPLE)} asked for {f['pref']} here")
    if rng.random() < 0.05:
        lines.append(f"DB_PASSWORD=Tr0ub4dor-{rng.randint(1000, 9999)}-{f['city']}")
    return "\n".join(lines)


def _tool(rng: random.Random, f: dict[str, Any], cwd: str) -> tuple[str, dict[str, Any], Any]:
    """(tool_name, tool_input, tool_response) of one PostToolUse, as Claude Code sends them."""
    name = rng.choice(("Bash", "Bash", "Read", "Edit", "Grep"))
    proj = f["proj"].lower()
    if name == "Bash":
        command = rng.choice((f"kubectl logs deploy/{proj}-api --since=1h | tail -n 60",
                              f"pytest tests/test_{proj}.py -q -x", f"git log --oneline -n {f['n2']}",
                              f"grep -rn '{f['task']}' src/{proj} | head"))
        return name, {"command": command, "description": f"Check {f['task']} on {f['proj']}"}, \
            {"stdout": _output(rng, f), "stderr": "", "interrupted": False, "isImage": False}
    path = f"{cwd}/src/{proj}/{f['task'].replace(' ', '_')}.py"
    if name == "Read":
        return name, {"file_path": path}, {"type": "text", "file": {"filePath": path,
                                                                   "content": _output(rng, f)}}
    if name == "Grep":
        return name, {"pattern": f["task"], "path": f"{cwd}/src"}, {"mode": "content",
                                                                    "content": _output(rng, f)}
    old, new = f"TIMEOUT = {f['n2']}", f"TIMEOUT = {f['n2'] * 2}"
    return name, {"file_path": path, "old_string": old, "new_string": new}, \
        {"filePath": path, "oldString": old, "newString": new, "userModified": False}


def claude_sessions(n_events: int, seed: int = 42) -> list[dict[str, Any]]:
    """Sessions of Claude Code hook payloads adding up to at least ``n_events`` events.

    Each is ``{"id", "steps": [(payload, transcript lines to append before the hook)]}``:
    SessionStart, then 2-8 turns (UserPromptSubmit, 0-5 PostToolUse, Stop), SessionEnd.
    Events per hook: 1, 1, 2 (call + result), 2 (the answer + the stop), 1."""
    rng = random.Random(seed)
    answers = iter(generate_memories(max(200, n_events), seed=seed))
    sessions, total = [], 0
    while total < n_events:
        sid = f"{rng.getrandbits(128):032x}"
        sid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
        cwd = f"/home/dev/{rng.choice(PROJECTS).lower()}"
        base = {"session_id": sid, "transcript_path": "", "cwd": cwd, "permission_mode": "default"}
        steps: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
            ({**base, "hook_event_name": "SessionStart", "source": "startup",
              "model": "claude-sonnet-4-5-20250929"}, [])]
        events = 1
        parent = None

        def entry(kind: str, message: dict[str, Any], sid: str = sid, cwd: str = cwd) -> dict[str, Any]:
            nonlocal parent
            uid = f"{rng.getrandbits(64):016x}"
            line = {"parentUuid": parent, "isSidechain": False, "type": kind, "sessionId": sid,
                    "cwd": cwd, "version": "2.0.14", "message": message, "uuid": uid, "timestamp": ""}
            parent = uid
            return line

        for _turn in range(rng.randint(2, 8)):
            f = _fields(rng)
            prompt = rng.choice((
                f"Why did the {f['proj']} {f['event']} fail on {f['date']}? {f['p']} says {f['tool']} "
                f"showed {f['n']} errors.",
                f"Please move {f['task']} for {f['proj']} to {f['tool2']}; {f['p2']} in {f['city']} "
                f"approved a budget of {f['n']} hours.",
                f"Add a test for the {f['task']} timeout ({f['n2']} s) and ask {f['p']} to review it.",
                f"Summarise what {f['p']} and {f['p2']} decided about {f['proj']} before {f['date2']}."))
            steps.append(({**base, "hook_event_name": "UserPromptSubmit", "prompt": prompt},
                          [entry("user", {"role": "user", "content": prompt})]))
            events += 1
            for _call in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 5))):
                name, tool_input, response = _tool(rng, _fields(rng), cwd)
                use_id = f"toolu_{rng.getrandbits(96):024x}"
                lines = [entry("assistant", {"id": f"msg_{rng.getrandbits(48):012x}", "role": "assistant",
                                             "content": [{"type": "tool_use", "id": use_id, "name": name,
                                                          "input": tool_input}]}),
                         entry("user", {"role": "user", "content": [
                             {"type": "tool_result", "tool_use_id": use_id,
                              "content": json.dumps(response)[:8000]}]})]
                steps.append(({**base, "hook_event_name": "PostToolUse", "tool_name": name,
                               "tool_input": tool_input, "tool_response": response, "tool_use_id": use_id},
                              lines))
                events += 2
            answer = " ".join(next(answers)["content"] for _ in range(rng.randint(1, 3)))
            steps.append(({**base, "hook_event_name": "Stop", "stop_hook_active": False},
                          [entry("assistant", {"id": f"msg_{rng.getrandbits(48):012x}", "role": "assistant",
                                               "content": [{"type": "text", "text": answer}]})]))
            events += 2
        steps.append(({**base, "hook_event_name": "SessionEnd",
                       "reason": rng.choice(("prompt_input_exit", "clear", "logout"))}, []))
        events += 1
        sessions.append({"id": sid, "steps": steps, "events": events})
        total += events
    return sessions


def write_transcript(path: Path, lines: list[dict[str, Any]]) -> None:
    """Append transcript lines, stamped now (as Claude Code writes them)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with path.open("a") as out:
        for line in lines:
            out.write(json.dumps({**line, "timestamp": stamp}) + "\n")


def prepared_events(session: dict[str, Any], transcript: Path) -> list[dict[str, Any]]:
    """The events the hooks of a session produce (converted here, redacted as the client
    does), for the series that send events without running the hooks."""
    transcript.unlink(missing_ok=True)
    events = []
    for payload, lines in session["steps"]:
        write_transcript(transcript, lines)
        converted = convert("claude-code", json.dumps({**payload, "transcript_path": str(transcript)}))
        events += [redact_event(e) for e in converted.events]
    return events


def memory_of(event: dict[str, Any]) -> dict[str, Any]:
    """An event as a plain memory: the same text (or the server's line for an empty one)."""
    text = event.get("text") or f"{event['event_type'].replace('_', ' ').capitalize()}."
    return {"content": text, "kind": "episode", "session_id": event["session_id"],
            "occurred_at": event["occurred_at"], "metadata": event.get("metadata", {})}
