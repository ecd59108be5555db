"""Hook payloads to events (memoryweb_capture/events.py): the mapping per format, the
bounds on tool texts, and ids that are the same for the same hook and differ otherwise."""

from __future__ import annotations

import ast
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memoryweb_capture import events as ev
from tests.capture.support import SECRET_MARKERS, Transcript, payload, session_steps

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
PACKAGE = Path(ev.__file__).resolve().parent


def _all_text(events: list[dict]) -> str:
    return json.dumps(events)


def _session(tmp_path: Path) -> list[list[dict]]:
    """The recorded Claude Code session converted hook by hook, as the hooks fired."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    transcript = Transcript(tmp_path / "transcript.jsonl")
    out = []
    for body, lines in session_steps(transcript.path):
        transcript.grow_to(lines)
        out.append(ev.from_claude_code(body, now=NOW))
    return out


def test_the_recorded_claude_code_session_maps_hook_by_hook(tmp_path):
    per_hook = _session(tmp_path)
    types = [[(e["event_type"], e["role"]) for e in hook] for hook in per_hook]
    assert types == [
        [("session_start", "system")],
        [("user_message", "user")],
        [("tool_call", "assistant"), ("tool_result", "tool")],
        [("tool_call", "assistant"), ("tool_result", "tool")],
        [("assistant_message", "assistant"), ("assistant_stop", "assistant")],
        [("user_message", "user")],
        [("assistant_message", "assistant"), ("assistant_stop", "assistant")],
        [("session_end", "system")],
    ]
    flat = [e for hook in per_hook for e in hook]
    assert {e["session_id"] for e in flat} == {"3f1c2a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c"}
    assert len({e["id"] for e in flat}) == len(flat)
    start, prompt, bash_call, bash_result, edit_call, _, reply, stop, _, reply2, _, end = flat
    assert "text" not in start and start["metadata"]["source"] == "startup"
    assert start["metadata"]["capture"] == "claude-code" and start["metadata"]["cwd"] == "/home/dev/webshop"
    assert prompt["text"].startswith("The checkout deploy fails")
    assert bash_call["text"] == "Bash: cat config/.env"
    assert bash_call["metadata"]["tool_name"] == "Bash"
    assert bash_call["metadata"]["tool_use_id"] == "toolu_01HZ8kP2sQ9wX4vB7nM3cR5t"
    assert bash_result["text"].startswith("Bash result: PAYMENT_TIMEOUT=2")
    assert edit_call["text"].startswith('Edit: {"file_path": "/home/dev/webshop/config/settings.py"')
    assert reply["text"].startswith("The payment call timed out because PAYMENT_TIMEOUT was 2 seconds")
    assert reply["metadata"]["transcript_uuid"] == "a1e0c6f2-1b2c-4d3e-8f90-112233445507"
    assert "text" not in stop and stop["metadata"]["stop_hook_active"] is False
    # the second reply: its thinking line has no text, its text line is the message
    assert reply2["text"].startswith("Added tests/test_settings.py::test_payment_timeout_default")
    assert end["metadata"]["reason"] == "prompt_input_exit"


def test_the_hooks_and_the_server_give_an_event_the_same_role():
    """A tool call is the assistant's act (it asks for the tool); its result comes from
    the tool: the hooks send the role the server would give an event without one, so
    a session reads the same whether a hook or a client that sends no role stored it."""
    from apps.memories.event_schemas import DEFAULT_ROLE as SERVER_ROLE

    assert set(ev.EVENT_TYPES) == {str(t) for t in SERVER_ROLE}
    assert ev.DEFAULT_ROLE == {str(t): role for t, role in SERVER_ROLE.items()}
    assert ev.DEFAULT_ROLE["tool_call"] == "assistant" and ev.DEFAULT_ROLE["tool_result"] == "tool"
    call = ev.normalise_event({"event_type": "tool_call", "session_id": "s1", "text": "ls"}, now=NOW)
    assert call["role"] == "assistant"


def test_no_planted_secret_survives_conversion(tmp_path):
    text = _all_text([e for hook in _session(tmp_path) for e in hook])
    for marker in SECRET_MARKERS:
        assert marker not in text
    for name in ("openai", "aws_access_key_id", "aws_secret_access_key", "private_key", "url_credentials"):
        assert f"[REDACTED:{name}]" in text


def test_the_same_hook_fired_twice_gives_the_same_ids(tmp_path):
    first, second = _session(tmp_path / "a"), _session(tmp_path / "b")
    assert [[e["id"] for e in hook] for hook in first] == [[e["id"] for e in hook] for hook in second]


def test_the_same_prompt_later_in_the_session_is_another_event(tmp_path):
    """"yes" twice: the transcript has moved on, so the second is not taken for a replay."""
    transcript = Transcript(tmp_path / "t.jsonl")
    body = {**payload("claude_code/06_user_prompt_submit.json"), "prompt": "yes",
            "transcript_path": str(transcript.path)}
    transcript.grow_to(3)
    first = ev.from_claude_code(body, now=NOW)
    again = ev.from_claude_code(body, now=NOW)
    transcript.grow_to(6)
    later = ev.from_claude_code(body, now=NOW)
    assert first[0]["id"] == again[0]["id"] != later[0]["id"]


def test_ids_do_not_depend_on_the_clock(tmp_path):
    body = payload("claude_code/03_post_tool_use_bash.json")
    body["transcript_path"] = str(tmp_path / "none.jsonl")
    one = ev.from_claude_code(body, now=NOW)
    two = ev.from_claude_code(body)  # now
    assert [e["id"] for e in one] == [e["id"] for e in two]
    assert one[0]["occurred_at"] != two[0]["occurred_at"]


def test_events_of_one_hook_keep_their_order_in_time(tmp_path):
    body = payload("claude_code/03_post_tool_use_bash.json")
    call, result = ev.from_claude_code(body, now=NOW)
    assert call["occurred_at"] == "2026-12-01T10:00:00Z"
    assert result["occurred_at"] == "2026-12-01T10:00:00.000001Z"


def test_tool_texts_are_bounded_and_redacted_before_the_cut():
    secret_at_the_cut = "sk-" + "proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
    big = "line of build output\n" * 5000 + secret_at_the_cut + " tail " + "x" * 200000
    body = {"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash",
            "tool_input": {"command": "make"}, "tool_response": {"stdout": big, "stderr": ""}}
    _call, result = ev.from_claude_code(body, tool_chars=500, now=NOW)
    assert len(result["text"]) < 600
    assert "[truncated:" in result["text"]
    assert secret_at_the_cut[10:] not in result["text"]
    # a secret straddling the pre-redaction window is never half-kept either
    for cut in range(0, 40, 3):
        text = "a " * ((500 * 4 + 4096 - cut) // 2) + secret_at_the_cut + " end"
        out = ev.bounded(text, chars=500)
        assert "Zz9Yy8Xx7Ww6" not in out


def test_tool_chars_comes_from_the_environment_within_its_range():
    assert ev.tool_chars_from_env({}) == ev.TOOL_CHARS
    assert ev.tool_chars_from_env({"MEMORYWEB_CAPTURE_TOOL_CHARS": "800"}) == 800
    assert ev.tool_chars_from_env({"MEMORYWEB_CAPTURE_TOOL_CHARS": "5"}) == ev.TOOL_CHARS_RANGE[0]
    assert ev.tool_chars_from_env({"MEMORYWEB_CAPTURE_TOOL_CHARS": "lots"}) == ev.TOOL_CHARS


def test_long_prompts_are_cut_to_the_byte_limit():
    body = {"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": "é" * 40000}
    (event,) = ev.from_claude_code(body, now=NOW)
    assert len(event["text"].encode()) <= ev.MAX_TEXT_BYTES + 60


def test_stop_reads_the_last_assistant_message_across_its_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [
        {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "uuid": "a1", "timestamp": "2026-11-30T09:00:00.5Z",
         "message": {"id": "m1", "content": [{"type": "text", "text": "old answer"}]}},
        {"type": "assistant", "uuid": "a2", "timestamp": "2026-11-30T09:01:00Z",
         "message": {"id": "m2", "content": [{"type": "text", "text": "part one"}]}},
        {"type": "assistant", "uuid": "a3", "timestamp": "2026-11-30T09:01:01.250Z",
         "message": {"id": "m2", "content": [{"type": "tool_use", "name": "Bash", "input": {}}]}},
        {"type": "assistant", "uuid": "a4", "timestamp": "2026-11-30T09:01:02.250Z",
         "message": {"id": "m2", "content": [{"type": "text", "text": "part two"}]}},
        {"type": "system", "uuid": "s1", "subtype": "stop_hook_summary"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{partial")
    message, stop = ev.from_claude_code({"session_id": "s", "hook_event_name": "Stop",
                                         "transcript_path": str(path)}, now=NOW)
    assert message["text"] == "part one\npart two"
    assert message["metadata"]["transcript_uuid"] == "a4"
    assert message["occurred_at"] == "2026-11-30T09:01:02.250000Z"
    assert stop["event_type"] == "assistant_stop" and stop["occurred_at"] == "2026-12-01T10:00:00Z"


def test_stop_without_a_transcript_uses_the_payloads_message():
    body = {"session_id": "s", "hook_event_name": "Stop", "transcript_path": "/nonexistent.jsonl",
            "last_assistant_message": "Done: 3 files changed."}
    message, _stop = ev.from_claude_code(body, now=NOW)
    assert message["text"] == "Done: 3 files changed."
    assert message["id"] == ev.from_claude_code(body)[0]["id"]
    only_stop = ev.from_claude_code({"session_id": "s", "hook_event_name": "Stop"}, now=NOW)
    assert [e["event_type"] for e in only_stop] == ["assistant_stop"]


def test_stop_prefers_the_payloads_message_when_the_transcript_lags(tmp_path):
    """The hook can run before the answer's line is in the transcript: the transcript's
    last text is then the previous answer, already captured."""
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"type": "assistant", "uuid": "a1", "timestamp": "2026-11-30T09:00:00Z",
                                "message": {"id": "m1", "content": [{"type": "text", "text": "Earlier."}]}}))
    lagging = {"session_id": "s", "hook_event_name": "Stop", "transcript_path": str(path),
               "last_assistant_message": "The new answer."}
    message, _stop = ev.from_claude_code(lagging, now=NOW)
    assert message["text"] == "The new answer." and "transcript_uuid" not in message["metadata"]
    agreeing = {**lagging, "last_assistant_message": "Earlier."}
    message, _stop = ev.from_claude_code(agreeing, now=NOW)
    assert message["metadata"]["transcript_uuid"] == "a1"


def test_other_hook_events_and_bad_payloads():
    assert ev.from_claude_code({"session_id": "s", "hook_event_name": "PreToolUse"}) == []
    blank = {"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": " "}
    assert ev.from_claude_code(blank) == []
    with pytest.raises(ev.PayloadError, match="session_id"):
        ev.from_claude_code({"hook_event_name": "Stop"})
    with pytest.raises(ev.PayloadError):
        ev.from_claude_code(["not", "an", "object"])


def test_the_recorded_codex_turns_map_to_user_and_assistant_messages():
    turns = [ev.from_codex(payload(f"codex/notify_{n}.json"), now=NOW) for n in (1, 2, 3)]
    assert [[e["event_type"] for e in turn] for turn in turns] == [
        ["user_message", "assistant_message"], ["user_message", "user_message", "assistant_message"],
        ["user_message", "assistant_message"]]
    flat = [e for turn in turns for e in turn]
    assert {e["session_id"] for e in flat} == {"b5f6c1c2-4e1d-4a7b-9c3e-0f1a2b3c4d5e"}
    assert len({e["id"] for e in flat}) == len(flat)
    assert flat[2]["text"] == "Also export GITHUB_TOKEN=[REDACTED:github] in the CI script."
    assert flat[3]["text"] == "And bump the version to 0.4.2."
    assert flat[1]["metadata"] == {"capture": "codex", "cwd": "/home/dev/inventory", "turn_id": "turn-1"}
    again = ev.from_codex(payload("codex/notify_2.json"))
    assert [e["id"] for e in again] == [e["id"] for e in turns[1]]


def test_codex_without_a_thread_id_and_other_notifications():
    body = {"type": "agent-turn-complete", "turn-id": "7", "cwd": "/w", "input-messages": ["go"],
            "last-assistant-message": "went"}
    events = ev.from_codex(body, now=NOW)
    assert events[0]["session_id"].startswith("codex-")
    assert events[0]["session_id"] == ev.from_codex({**body, "turn-id": "8"})[0]["session_id"]
    assert ev.from_codex({"type": "approval-requested"}) == []


def test_jsonl_events_are_checked_and_completed():
    event = ev.normalise_event({"event_type": "tool_result", "session_id": " s1 ", "text": "ok"}, now=NOW)
    assert event["role"] == "tool" and event["session_id"] == "s1" and event["metadata"] == {}
    assert event["occurred_at"] == "2026-12-01T10:00:00Z"
    same = ev.normalise_event({"event_type": "tool_result", "session_id": "s1", "text": "ok"})
    assert event["id"] == same["id"]
    given = ev.normalise_event({"id": "e-1", "event_type": "session_end", "session_id": "s",
                                "occurred_at": "2026-11-02T03:04:05+02:00", "role": "system"})
    assert given["id"] == "e-1" and given["occurred_at"] == "2026-11-02T01:04:05Z" and "text" not in given


@pytest.mark.parametrize(("event", "message"), [
    ({"event_type": "chat", "session_id": "s", "text": "x"}, "event_type"),
    ({"event_type": "user_message", "text": "x"}, "session_id"),
    ({"event_type": "user_message", "session_id": "s" * 129, "text": "x"}, "session_id"),
    ({"event_type": "user_message", "session_id": "s"}, "text is required"),
    ({"event_type": "user_message", "session_id": "s", "text": 5}, "text"),
    ({"event_type": "user_message", "session_id": "s", "text": "x", "occurred_at": "now"}, "occurred_at"),
    ({"event_type": "user_message", "session_id": "s", "text": "x", "metadata": []}, "metadata"),
    ({"event_type": "user_message", "session_id": "s", "text": "x", "kind": "fact"}, "unknown field 'kind'"),
    ({"event_type": "user_message", "session_id": "s", "text": "x", "id": 7}, "id"),
])
def test_jsonl_refusals_name_the_field(event, message):
    with pytest.raises(ev.PayloadError, match=message):
        ev.normalise_event(event)


def test_convert_keeps_good_lines_and_records_bad_ones():
    raw = "\n".join([json.dumps({"event_type": "user_message", "session_id": "s", "text": "one"}),
                     "{not json",
                     json.dumps({"event_type": "nope", "session_id": "s"}),
                     json.dumps({"event_type": "assistant_message", "session_id": "s", "text": "two"})])
    result = ev.convert("jsonl", raw, now=NOW)
    assert [e["text"] for e in result.events] == ["one", "two"]
    assert result.events[0]["occurred_at"] < result.events[1]["occurred_at"]
    assert [(error["line"], error["error"][:8]) for error in result.errors] == [(2, "not JSON"),
                                                                              (3, "event_ty")]


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-30T09:14:02.118Z", "2026-11-30T09:14:02.118000Z"),
    ("2026-11-30T09:14:02Z", "2026-11-30T09:14:02Z"),
    ("2026-11-30 09:14", "2026-11-30T09:14:00Z"),
    ("2026-11-30T09:14:02.123456789+0100", "2026-11-30T08:14:02.123456Z"),
    (1764494042, "2025-11-30T09:14:02Z"),
])
def test_times_parse_as_python_3_9_could_not(raw, expected):
    assert ev.iso(ev.parse_time(raw)) == expected


def test_bad_times_are_none():
    assert ev.parse_time("30/11/2026") is None and ev.parse_time(True) is None
    assert ev.parse_time("2026-13-45T00:00:00Z") is None


def test_the_package_is_standard_library_only_and_python_3_9_syntax():
    """It runs in hooks with the system python3: nothing to install, 3.9 or later."""
    allowed = set(sys.stdlib_module_names) | {"memoryweb_capture", "__future__"}
    for module in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(module.read_text(), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{module.name} imports {name}"
        if module.name != "__main__.py" and module.read_text().strip():
            assert "from __future__ import annotations" in module.read_text() or module.name == "__init__.py"


# -- redaction before any cut ---------------------------------------------------------------

GITHUB_AT_THE_CUT = "ghp_" + "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc4Vb6"


def _fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i:i + size] for i in range(4, len(secret) - size + 1)]


def test_a_token_straddling_the_tool_cut_leaves_no_prefix():
    """``ghp_`` + 15 characters is below the pattern's minimum: cut first, it would pass
    any later redaction. Redacted first, nothing of it is left whatever the cut's place."""
    for shift in range(0, len(GITHUB_AT_THE_CUT) + 2):
        text = "x" * (500 - 4 - shift) + " " + GITHUB_AT_THE_CUT + " tail " * 50
        out = ev.bounded(text, chars=500)
        assert "[truncated:" in out
        for fragment in _fragments(GITHUB_AT_THE_CUT):
            assert fragment not in out, (shift, out[-60:])


def test_a_token_straddling_the_byte_cut_of_a_prompt_leaves_no_prefix():
    for shift in (1, 10, 19, 25):
        prompt = "é" * ((ev.MAX_TEXT_BYTES - shift) // 2) + " " + GITHUB_AT_THE_CUT + " and more"
        (event,) = ev.from_claude_code({"session_id": "s", "hook_event_name": "UserPromptSubmit",
                                        "prompt": prompt}, now=NOW)
        assert "[truncated:" in event["text"]
        for fragment in _fragments(GITHUB_AT_THE_CUT):
            assert fragment not in event["text"]


def test_a_secret_spanning_a_space_far_beyond_the_kept_part_is_redacted_whole():
    """A JSON password whose value holds a space and runs on: cut at the space before the
    whole text was redacted, ``"password": "correct`` no longer matched any pattern and
    "correct" was kept. Redacting the full text first catches the value whole."""
    value = "correct horse" + "-" * 20000 + "battery"
    tool_input = {"command": 'echo \'{"password": "' + value + '"}\''}
    body = {"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash",
            "tool_input": tool_input, "tool_response": {"stdout": "ok"}}
    call, _result = ev.from_claude_code(body, tool_chars=500, now=NOW)
    assert "correct" not in call["text"] and "[REDACTED:credential]" in call["text"]
    answer = '{"password": "' + value + '"}'
    (user, assistant) = ev.from_codex({"type": "agent-turn-complete", "thread-id": "t", "turn-id": "1",
                                       "input-messages": [answer], "last-assistant-message": answer},
                                      now=NOW)
    for event in (user, assistant):
        assert "correct" not in event["text"] and "[REDACTED:credential]" in event["text"]


def test_a_text_too_long_to_redact_in_a_hook_is_omitted_not_cut():
    text = GITHUB_AT_THE_CUT + " " + "y" * ev.REDACT_MAX_CHARS
    out = ev.bounded(text, chars=500)
    assert out.startswith("[omitted:") and "ghp_" not in out
    line = json.dumps({"event_type": "user_message", "session_id": "s", "text": text})
    (event,) = ev.convert("jsonl", line, now=NOW).events
    assert event["text"].startswith("[omitted:")
