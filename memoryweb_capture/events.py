"""Hook payloads to MemoryWeb events: Claude Code hooks, Codex ``notify``, JSON lines.

An event is what ``POST /api/v1/events`` takes: ``{"id", "event_type", "role",
"session_id", "occurred_at", "text", "metadata"}``. Each id is *derived* from what the
hook saw (uuid5 of the source, the session, the hook and a stable key: Claude Code's
``tool_use_id``, the transcript entry's ``uuid``, Codex's ``turn-id``, or a digest of
the payload), never random: a hook fired twice, or events replayed from the spool after
an outage, carry the same ids, and the server stores each id once.

Texts are bounded here (tool input and output to ``tool_chars`` characters each, other
texts to ``MAX_TEXT_BYTES``) and redacted whole before they are cut, so a secret is
never half-kept by a cut (a text too long to redact in a hook is omitted instead). The
client (``client.py``) redacts every event again, text and metadata, before it is
spooled or sent.

Standard library only (runs inside agent hooks with the system python3 ≥ 3.9).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .redact import redact

EVENT_TYPES = ("session_start", "user_message", "assistant_message", "tool_call", "tool_result",
               "assistant_stop", "session_end")
#: Event types that may come without text.
TEXT_OPTIONAL = frozenset({"session_start", "session_end", "assistant_stop"})
#: The role an event type gets when the source names none: the server's defaults
#: (apps/memories/event_schemas.py). A tool call is the assistant's act (it asks for the
#: tool, as in a chat-completions assistant message); only its result comes from the tool.
DEFAULT_ROLE = {"session_start": "system", "user_message": "user", "assistant_message": "assistant",
                "tool_call": "assistant", "tool_result": "tool", "assistant_stop": "assistant",
                "session_end": "system"}
FIELDS = frozenset({"id", "event_type", "role", "session_id", "occurred_at", "text", "metadata"})

#: Characters kept of a tool's input and of its response (each), unless
#: MEMORYWEB_CAPTURE_TOOL_CHARS says otherwise: enough to know what was done, never a
#: whole file or a whole build log.
TOOL_CHARS = 2000
TOOL_CHARS_RANGE = (200, 30000)
#: UTF-8 bytes kept of a prompt or an assistant message (the server's default content
#: limit is 32 KiB).
MAX_TEXT_BYTES = 30000
MAX_SESSION_ID = 128
#: The longest text a hook redacts (redaction runs at about 1 µs a character): longer
#: ones are omitted whole, never cut before redaction. Tool outputs stay far below it
#: (Claude Code caps Bash output at 30,000 characters and a Read at 25,000 tokens).
REDACT_MAX_CHARS = 500_000
#: How much of a transcript's end is read for the Stop hook's message (and an anchor).
TRANSCRIPT_TAIL_BYTES = 512 * 1024

#: The namespace of capture's uuid5 event ids.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://memoryweb.invalid/capture/event")


class PayloadError(ValueError):
    """A payload or event line that cannot become events (the message says why)."""


def event_id(*parts: str) -> str:
    """The deterministic id of an event: uuid5 over its identifying parts."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))


def digest(value: Any) -> str:
    """A stable digest of a JSON value (keys sorted), for ids of payloads with no id."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)  # noqa: UP017 - runs on python3 3.9 too


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: UP017


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?"
                  r"(Z|z|[+-]\d{2}:?\d{2})?$")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time (``Z`` or an offset; naive is UTC) or epoch seconds; None
    when it is not one. Python 3.9's ``fromisoformat`` takes neither ``Z`` nor 1-2 or
    9-digit fractions, hence the normalisation."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)  # noqa: UP017
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    if len(clock) == 5:
        clock += ":00"
    text = f"{day}T{clock}"
    if fraction:
        text += "." + (fraction + "000000")[:6]
    if not zone or zone in "Zz":
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.fromisoformat(text + zone)
    except ValueError:
        return None


def _cut_chars(text: str, limit: int) -> str:
    """At most ``limit`` characters, with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [truncated: {len(text) - limit} more characters]"


def _cut_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return kept + f"\n… [truncated: {len(data) - limit} more bytes]"


def bounded(text: str, *, chars: int | None = None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """``text`` redacted whole, then cut to ``chars`` characters (tool texts) and to
    ``max_bytes`` UTF-8 bytes.

    Redaction always sees the full text, never a cut one: a token cut first can fall
    below its pattern's minimum (``ghp_`` + 15 characters), and a secret spanning a
    space loses the context that names it (``"password": "correct horse…``), so no later
    redaction would catch the part kept. A text longer than ``REDACT_MAX_CHARS`` (about a
    second of redaction) is not kept at all: a note of its length replaces it, since
    cutting it before redaction is exactly what must not happen."""
    if len(text) > REDACT_MAX_CHARS:
        return f"[omitted: {len(text)} characters, more than the {REDACT_MAX_CHARS:,} a hook redacts]"
    text = redact(text)
    if chars is not None:
        text = _cut_chars(text, chars)
    return _cut_bytes(text, max_bytes)


def tool_chars_from_env(environ: dict[str, str] | None = None) -> int:
    """MEMORYWEB_CAPTURE_TOOL_CHARS within its range; the default when unset or bad."""
    raw = (environ if environ is not None else os.environ).get("MEMORYWEB_CAPTURE_TOOL_CHARS", "")
    try:
        value = int(raw)
    except ValueError:
        return TOOL_CHARS
    low, high = TOOL_CHARS_RANGE
    return min(max(value, low), high)


class _Clock:
    """Occurred-at times for the events of one invocation: a payload carries no time,
    so they are "now", one microsecond apart so the server keeps their order."""

    def __init__(self, now: datetime | None):
        self.base = now or utc_now()
        self.step = 0

    def next(self) -> str:
        moment = self.base + timedelta(microseconds=self.step)
        self.step += 1
        return iso(moment)


def _event(event_type: str, session_id: str, event_id_: str, occurred_at: str, text: str | None,
           metadata: dict[str, Any]) -> dict[str, Any]:
    event = {"id": event_id_, "event_type": event_type, "role": DEFAULT_ROLE[event_type],
             "session_id": session_id, "occurred_at": occurred_at, "text": text,
             "metadata": {k: v for k, v in metadata.items() if v not in (None, "")}}
    return _without_empty_text(event)


def _without_empty_text(event: dict[str, Any]) -> dict[str, Any]:
    """An event without text leaves the field out (the server refuses a null text)."""
    if event.get("text") is None:
        event.pop("text", None)
    return event


# -- Claude Code ---------------------------------------------------------------------------

#: Hook events that become events; the others (PreToolUse, Notification, …) are ignored.
CLAUDE_HOOKS = ("SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd")


def read_transcript_tail(path: Any, max_bytes: int = TRANSCRIPT_TAIL_BYTES) -> list[dict[str, Any]]:
    """The JSON entries of the last ``max_bytes`` of a Claude Code transcript (JSONL),
    oldest first; [] when there is none or it cannot be read. Only the end is read: a
    long session's transcript runs to megabytes and the hook must stay fast."""
    if not isinstance(path, str) or not path:
        return []
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first line is a partial one
    entries = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written, or not JSON
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _anchor(entries: list[dict[str, Any]]) -> str:
    """The uuid of the transcript's last entry: where in the session a hook fired, so two
    identical prompts ("yes") at different points get different ids while one hook
    fired twice gets the same."""
    for entry in reversed(entries):
        if isinstance(entry.get("uuid"), str):
            return entry["uuid"]
    return ""


def _text_blocks(entry: dict[str, Any]) -> str:
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [block["text"] for block in content if isinstance(block, dict)
             and block.get("type") == "text" and isinstance(block.get("text"), str)]
    return "\n".join(part for part in parts if part)


def last_assistant_message(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The assistant's last message in a transcript: ``{"uuid", "timestamp", "text"}``.

    Claude Code writes one transcript line per content block, so a message's text can
    span several ``type: "assistant"`` lines sharing ``message.id``: the text of the last
    line with text, joined with the earlier lines of the same message."""
    last = None
    for entry in entries:
        if entry.get("type") == "assistant" and _text_blocks(entry).strip():
            last = entry
    if last is None:
        return None
    message = last.get("message") if isinstance(last.get("message"), dict) else {}
    message_id = message.get("id")
    if message_id:
        texts = [_text_blocks(entry) for entry in entries if entry.get("type") == "assistant"
                 and isinstance(entry.get("message"), dict) and entry["message"].get("id") == message_id]
        text = "\n".join(part for part in texts if part.strip())
    else:
        text = _text_blocks(last)
    return {"uuid": str(last.get("uuid") or ""), "timestamp": last.get("timestamp"), "text": text}


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _tool_input_text(name: str, tool_input: Any) -> str:
    """``Bash: ls -la`` for a command; the input's JSON for other tools."""
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
        return f"{name}: {tool_input['command']}"
    return f"{name}: {_render(tool_input)}"


def _tool_response_text(name: str, response: Any) -> str:
    """Bash's stdout and stderr as text; other responses as a string or their JSON."""
    if isinstance(response, dict) and ("stdout" in response or "stderr" in response):
        parts = [str(response.get(key) or "") for key in ("stdout", "stderr")]
        body = "\n".join(part for part in parts if part.strip())
    else:
        body = _render(response) if response is not None else ""
    return f"{name} result: {body if body.strip() else '(no output)'}"


def from_claude_code(payload: Any, *, tool_chars: int = TOOL_CHARS,
                     now: datetime | None = None) -> list[dict[str, Any]]:
    """The events of one Claude Code hook payload (the JSON its hooks get on stdin).

    SessionStart → session_start; UserPromptSubmit → user_message; PostToolUse →
    tool_call + tool_result; Stop → assistant_message (its text from the transcript's
    last assistant entry, else the payload's ``last_assistant_message``) + assistant_stop;
    SessionEnd → session_end. Other hook events give no events."""
    if not isinstance(payload, dict):
        raise PayloadError("a Claude Code hook payload is a JSON object")
    hook = payload.get("hook_event_name")
    session = payload.get("session_id")
    if not isinstance(session, str) or not session.strip():
        raise PayloadError("the payload has no session_id")
    session = session.strip()[:MAX_SESSION_ID]
    if hook not in CLAUDE_HOOKS:
        return []
    clock = _Clock(now)
    entries = read_transcript_tail(payload.get("transcript_path"))
    anchor = _anchor(entries)
    base = {"capture": "claude-code", "hook": hook, "cwd": payload.get("cwd"),
            "permission_mode": payload.get("permission_mode")}

    def ident(*parts: str) -> str:
        return event_id("claude-code", session, hook, *parts)

    if hook == "SessionStart":
        source = str(payload.get("source") or "")
        return [_event("session_start", session, ident(source, anchor), clock.next(), None,
                       {**base, "source": source, "model": payload.get("model")})]
    if hook == "UserPromptSubmit":
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return []
        return [_event("user_message", session, ident(digest(prompt), anchor), clock.next(),
                       bounded(prompt), base)]
    if hook == "PostToolUse":
        name = str(payload.get("tool_name") or "tool")
        use_id = payload.get("tool_use_id")
        key = use_id if isinstance(use_id, str) and use_id else \
            digest([name, payload.get("tool_input"), payload.get("tool_response")]) + anchor
        meta = {**base, "tool_name": name, "tool_use_id": use_id if isinstance(use_id, str) else None}
        call = bounded(_tool_input_text(name, payload.get("tool_input")), chars=tool_chars)
        result = bounded(_tool_response_text(name, payload.get("tool_response")), chars=tool_chars)
        return [_event("tool_call", session, ident(key, "call"), clock.next(), call, meta),
                _event("tool_result", session, ident(key, "result"), clock.next(), result, meta)]
    if hook == "Stop":
        return _stop_events(payload, session, entries, anchor, base, clock, ident)
    reason = str(payload.get("reason") or "")  # SessionEnd
    return [_event("session_end", session, ident(reason, anchor), clock.next(), None,
                   {**base, "reason": reason})]


def _stop_events(payload, session, entries, anchor, base, clock, ident) -> list[dict[str, Any]]:
    """The assistant's answer and the stop. The transcript's last assistant entry gives
    the text, the time and the id (its uuid). Newer Claude Code versions also send
    ``last_assistant_message``: when the transcript lacks that text (not written yet when
    the hook ran, or no transcript) the payload's text wins, with an id from its digest."""
    meta = {**base, "stop_hook_active": bool(payload.get("stop_hook_active"))}
    found = last_assistant_message(entries)
    sent = payload.get("last_assistant_message")
    sent = sent if isinstance(sent, str) and sent.strip() else None
    if found and found["uuid"] and (sent is None or _squash(sent) in _squash(found["text"])):
        key = found["uuid"]
        moment = parse_time(found.get("timestamp"))
        message = _event("assistant_message", session, ident(key, "message"),
                         iso(moment) if moment else clock.next(), bounded(found["text"]),
                         {**meta, "transcript_uuid": key})
    else:
        key = "text-" + digest(sent or "") + anchor
        message = _event("assistant_message", session, ident(key, "message"), clock.next(),
                         bounded(sent), meta) if sent else None
    stop = _event("assistant_stop", session, ident(key, "stop"), clock.next(), None, meta)
    return [message, stop] if message else [stop]


def _squash(text: str) -> str:
    return " ".join(text.split())


# -- Codex ----------------------------------------------------------------------------------

def _codex_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        for key in ("text", "content", "message"):
            if isinstance(message.get(key), str):
                return message[key]
    return ""


def from_codex(payload: Any, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The events of one Codex ``notify`` call (its single JSON argument): each of
    ``input-messages`` a user_message, ``last-assistant-message`` an assistant_message.
    The session is ``thread-id`` (older Codex versions send none: then one session per
    working directory). Notification types other than ``agent-turn-complete`` give none."""
    if not isinstance(payload, dict):
        raise PayloadError("a Codex notify payload is a JSON object")
    if payload.get("type") != "agent-turn-complete":
        return []
    cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else ""
    thread = payload.get("thread-id")
    session = thread.strip()[:MAX_SESSION_ID] if isinstance(thread, str) and thread.strip() \
        else "codex-" + digest(cwd)[:16]
    turn = payload.get("turn-id")
    turn = str(turn) if isinstance(turn, (str, int)) and str(turn) else "digest-" + digest(payload)
    clock = _Clock(now)
    base = {"capture": "codex", "cwd": cwd, "turn_id": turn}
    events = []
    messages = payload.get("input-messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        text = _codex_text(message)
        if text.strip():
            ident = event_id("codex", session, turn, "user", str(index))
            events.append(_event("user_message", session, ident, clock.next(), bounded(text), base))
    answer = _codex_text(payload.get("last-assistant-message"))
    if answer.strip():
        events.append(_event("assistant_message", session, event_id("codex", session, turn, "assistant"),
                             clock.next(), bounded(answer), base))
    return events


# -- JSON lines -----------------------------------------------------------------------------

def normalise_event(obj: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """One event of the generic JSON-lines format, checked and completed: a known
    ``event_type``, a ``session_id``, text where the type needs it; ``role`` defaults by
    type, ``occurred_at`` to now, ``id`` to a digest of the event (give an id, or an
    ``occurred_at``, so two identical lines stay two events). Raises PayloadError
    naming the field."""
    if not isinstance(obj, dict):
        raise PayloadError("an event is a JSON object")
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        raise PayloadError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(FIELDS))})")
    event_type = obj.get("event_type")
    if event_type not in EVENT_TYPES:
        raise PayloadError(f"event_type must be one of {', '.join(EVENT_TYPES)}")
    session = obj.get("session_id")
    if not isinstance(session, str) or not session.strip() or len(session.strip()) > MAX_SESSION_ID:
        raise PayloadError(f"session_id must be a non-empty string of at most {MAX_SESSION_ID} characters")
    role = obj.get("role", DEFAULT_ROLE[event_type])
    if not isinstance(role, str) or not role:
        raise PayloadError("role must be a non-empty string")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise PayloadError("text must be a string")
    if event_type not in TEXT_OPTIONAL and not (text or "").strip():
        raise PayloadError(f"text is required for {event_type}")
    metadata = obj.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise PayloadError("metadata must be a JSON object")
    occurred_raw = obj.get("occurred_at")
    if occurred_raw is None:
        occurred = iso(now or utc_now())
    else:
        moment = parse_time(occurred_raw)
        if moment is None:
            raise PayloadError("occurred_at must be an ISO 8601 date-time")
        occurred = iso(moment)
    text = bounded(text) if text and text.strip() else None
    ident = obj.get("id")
    if ident is None:
        ident = event_id("jsonl", session.strip(), event_type, str(occurred_raw or ""), text or "",
                         digest(metadata))
    elif not isinstance(ident, str) or not ident.strip() or len(ident) > 128:
        raise PayloadError("id must be a non-empty string of at most 128 characters")
    return _without_empty_text({"id": ident.strip(), "event_type": event_type, "role": role,
                                "session_id": session.strip(), "occurred_at": occurred, "text": text or None,
                                "metadata": metadata})


def parse_documents(raw: str) -> list[tuple[int, Any]]:
    """Stdin as numbered JSON values: one document (a hook payload, an event, or a list of
    them) numbered 1, else one per non-empty line numbered by its line. A line that is
    not JSON comes back as a PayloadError in its place, so the other lines still count."""
    raw = raw.strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        pass
    else:
        return list(enumerate(value, 1)) if isinstance(value, list) else [(1, value)]
    values: list[tuple[int, Any]] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                values.append((number, json.loads(line)))
            except ValueError as exc:
                values.append((number, PayloadError(f"not JSON: {exc}")))
    return values


class Conversion:
    """What one invocation's input became: events in order, and the inputs refused
    (``{"line", "error", "input"}``, the input redacted and cut short)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def refuse(self, number: int, error: str, value: Any) -> None:
        shown = bounded(_render(value) if not isinstance(value, PayloadError) else "", chars=500)
        self.errors.append({"line": number, "error": error, "input": shown})


FORMATS = ("claude-code", "codex", "jsonl")


def convert(fmt: str, raw: str, *, tool_chars: int = TOOL_CHARS, now: datetime | None = None) -> Conversion:
    """The events of an invocation's input in format ``fmt`` (see FORMATS); each refused
    payload or line is recorded, never raised."""
    result = Conversion()
    base = now or utc_now()
    for number, value in parse_documents(raw):
        if isinstance(value, PayloadError):
            result.refuse(number, str(value), value)
            continue
        at = base + timedelta(milliseconds=number)  # several payloads or lines keep their order
        try:
            if fmt == "claude-code":
                result.events.extend(from_claude_code(value, tool_chars=tool_chars, now=at))
            elif fmt == "codex":
                result.events.extend(from_codex(value, now=at))
            else:
                result.events.append(normalise_event(value, now=at))
        except PayloadError as exc:
            result.refuse(number, str(exc), value)
    return result
