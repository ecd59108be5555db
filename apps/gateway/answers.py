"""The text of an exchange for learning: the latest user turn of the request, and the
assistant's answer reassembled from what the relay passed on (apps/gateway/http.py).

The relay hands every chunk to an :class:`AnswerTap` after it was sent to the client,
so reading it costs the client nothing. Non-streaming, the tap keeps the body (at most
``MAX_BODY_BYTES``) and reads the answer's text from the API's JSON when the relay ends;
streaming, it parses the SSE events as they pass and keeps the text deltas of each shape:

- chat completions: ``choices[0].delta.content``;
- responses: ``response.output_text.delta`` events' ``delta``;
- Anthropic messages: ``content_block_delta`` events whose delta is a ``text_delta``.

A compressed answer (the client asked for gzip and the upstream sent it) is inflated for
the tap (gzip, deflate); one it cannot read (br, zstd) yields no text, and the exchange
is learned from the user's turn alone. Whatever the tap sees is bounded
(``MAX_TEXT_CHARS`` of text), so a long answer cannot grow the server's memory.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from . import injection

#: The non-streaming body kept for parsing, at most.
MAX_BODY_BYTES = 1_000_000
#: Characters of text kept (user turn, answer), each.
MAX_TEXT_CHARS = 20_000


def latest_user_text(api: str, body: dict[str, Any]) -> str:
    """The latest user turn's text (only it: earlier turns were learned from when they were
    the latest, and a replayed history must not count as a new sighting of their facts)."""
    if api == "responses":
        given = body.get("input")
        if isinstance(given, str):
            return given.strip()[-MAX_TEXT_CHARS:]
        items = [item for item in given if isinstance(item, dict)
                 and item.get("type", "message") == "message"] if isinstance(given, list) else []
        texts = injection._user_texts(items)
    else:
        texts = injection._user_texts(body.get("messages"))
    return texts[-1][-MAX_TEXT_CHARS:] if texts else ""


def _answer_text(api: str, data: Any) -> str:
    """The assistant's text in a non-streaming answer of ``api``."""
    if not isinstance(data, dict):
        return ""
    pieces: list[str] = []
    if api == "chat":
        for choice in (data.get("choices") or [])[:1]:
            content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
            pieces.append(injection._text(content))
    elif api == "responses":
        for item in data.get("output") or []:
            if isinstance(item, dict) and item.get("type") == "message":
                pieces += [part.get("text", "") for part in item.get("content") or []
                           if isinstance(part, dict) and part.get("type") == "output_text"
                           and isinstance(part.get("text"), str)]
    else:  # anthropic
        pieces += [block.get("text", "") for block in data.get("content") or []
                   if isinstance(block, dict) and block.get("type") == "text"
                   and isinstance(block.get("text"), str)]
    return "".join(pieces)


def _delta(api: str, event: Any) -> str:
    """The text one SSE event of ``api`` adds to the answer."""
    if not isinstance(event, dict):
        return ""
    if api == "chat":
        choices = event.get("choices") or []
        delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""
    if api == "responses":
        if event.get("type") == "response.output_text.delta" and isinstance(event.get("delta"), str):
            return event["delta"]
        return ""
    delta = event.get("delta")
    if event.get("type") == "content_block_delta" and isinstance(delta, dict) \
            and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
        return delta["text"]
    return ""


#: The events that close a stream of the responses and Anthropic APIs.
_CLOSING = frozenset({"response.completed", "message_stop"})


class AnswerTap:
    """Reassembles the assistant's text from the relayed bytes (see the module docstring)."""

    def __init__(self, api: str, content_type: str, content_encoding: str) -> None:
        self.api = api
        self.streaming = "text/event-stream" in content_type.lower()
        encoding = content_encoding.lower().strip()
        self._inflate = (zlib.decompressobj(32 + zlib.MAX_WBITS)
                         if encoding in ("gzip", "x-gzip", "deflate") else None)
        self.readable = encoding in ("", "identity", "gzip", "x-gzip", "deflate")
        self._buffer = bytearray()
        self._pieces: list[str] = []
        self._size = 0
        self.overflow = False
        #: A stream's closing event passed (chat's ``[DONE]``, ``response.completed``,
        #: ``message_stop``): the answer is whole even if the client hangs up right after
        #: it (the OpenAI SDK closes its stream on ``[DONE]``, before the body's end).
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if not self.readable or self.overflow:
            return
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk, MAX_BODY_BYTES)
            except zlib.error:
                self.readable = False
                return
        self._buffer += chunk
        if self.streaming:
            self._events()
        if len(self._buffer) > MAX_BODY_BYTES:
            self.overflow = not self.streaming  # a body too big to parse: no answer text
            self._buffer.clear()

    def _events(self) -> None:
        data = bytes(self._buffer).replace(b"\r\n", b"\n")
        *complete, rest = data.split(b"\n\n")
        self._buffer = bytearray(rest)
        for raw in complete:
            lines = [line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:")]
            payload = b"\n".join(lines)
            if payload == b"[DONE]":
                self.complete = True
            if not payload or payload == b"[DONE]":
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") in _CLOSING:
                self.complete = True
            piece = _delta(self.api, event)
            if piece and self._size < MAX_TEXT_CHARS:
                self._pieces.append(piece)
                self._size += len(piece)

    def text(self) -> str:
        """The answer's text so far (all of it once the relay ended)."""
        if not self.readable or self.overflow:
            return ""
        if not self.streaming:
            try:
                return _answer_text(self.api, json.loads(bytes(self._buffer)))[:MAX_TEXT_CHARS]
            except ValueError:
                return ""
        return "".join(self._pieces)[:MAX_TEXT_CHARS]
