"""``manage.py capture`` in process (its own process runs in test_end_to_end.py): the
options reach the hook client, and interactive use reports what a hook keeps quiet."""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.capture.support import FakeMemoryWeb


@pytest.fixture
def capture_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMORYWEB_API_KEY", "test-key")
    monkeypatch.setenv("MEMORYWEB_CAPTURE_SPOOL", str(tmp_path / "cap" / "spool.jsonl"))
    monkeypatch.delenv("MEMORYWEB_SERVER_URL", raising=False)
    monkeypatch.delenv("MEMORYWEB_NAMESPACE", raising=False)
    return tmp_path / "cap"


def _stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_the_command_sends_with_its_options(capture_env, monkeypatch):
    _stdin(monkeypatch, json.dumps({"event_type": "user_message", "session_id": "s", "text": "hi"}))
    out = io.StringIO()
    with FakeMemoryWeb() as fake:
        call_command("capture", "--server-url", fake.url, "--namespace", "alpha", stdout=out)
    assert "sent 1 (stored 1, existing 0)" in out.getvalue()
    assert fake.requests[0]["path"] == "/api/v1/events?namespace=alpha"


def test_the_command_takes_a_hook_format(capture_env, monkeypatch):
    body = {"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": "hello"}
    _stdin(monkeypatch, json.dumps(body))
    with FakeMemoryWeb() as fake:
        call_command("capture", "--server-url", fake.url, "--format", "claude-code", stdout=io.StringIO())
    assert [(e["event_type"], e["text"]) for e in fake.stored] == [("user_message", "hello")]


def test_a_missing_key_exits_2(capture_env, monkeypatch):
    monkeypatch.delenv("MEMORYWEB_API_KEY")
    _stdin(monkeypatch, "")
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("capture", stdout=io.StringIO(), stderr=err)
    assert raised.value.returncode == 2
    assert "MEMORYWEB_API_KEY is not set" in err.getvalue()


def test_events_the_server_refuses_exit_1(capture_env, monkeypatch):
    _stdin(monkeypatch, json.dumps({"event_type": "user_message", "session_id": "s", "text": "x"}))
    err = io.StringIO()
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: (403, {"detail": "read-only key"}, {})
        with pytest.raises(CommandError) as raised:
            call_command("capture", "--server-url", fake.url, stdout=io.StringIO(), stderr=err)
    assert raised.value.returncode == 1
    assert "HTTP 403" in err.getvalue() and "read-only key" in err.getvalue()
    assert (capture_env / "spool.rejected.jsonl").exists()


def test_flush_reads_no_input(capture_env, monkeypatch):
    _stdin(monkeypatch, "this would be refused if it were read")
    out = io.StringIO()
    with FakeMemoryWeb() as fake:
        call_command("capture", "--server-url", fake.url, "--flush", stdout=out)
    assert "sent 0" in out.getvalue() and fake.requests == []
