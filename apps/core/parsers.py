"""JSON from clients, parsed with a nesting limit, for every door.

Python's JSON decoder recurses once per nesting level: a body nested about 1,000 deep
raised ``RecursionError``, which no parser mapped, so every JSON route answered 500 with a
long traceback (the unauthenticated ``/v1/auth/token`` too), and the WebSocket closed
1011. Nothing MemoryWeb stores needs more than a few levels, so text nested deeper than
``MEMORYWEB_LIMITS['max_json_depth']`` (64) is refused *before* it is parsed, the same way
by the REST API and drop-in routes (:class:`JSONParser`, set in ``REST_FRAMEWORK``), the
WebSocket (apps/live/consumers.py) and MCP over HTTP (apps/mcp/http.py).

The depth is measured without parsing and in C-speed steps (regular expressions, then
``itertools.accumulate``): most bodies are settled by counting their brackets; a body with
more brackets than the limit has its strings removed (brackets inside strings are text)
and its running depth computed. The string pattern consumes an unterminated string to the
end instead of retrying at every quote, so hostile text costs one pass, not quadratic time.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

#: A JSON string, escapes included; possessive, and the closing quote optional, so the
#: regex engine never backtracks into it or restarts inside it.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
#: Each bracket as one byte: an opener 2, a closer 0; the depth after the i-th bracket
#: (from 1) is the running sum minus i.
_STEP = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})


class JSONTooDeep(ValueError):
    """The text nests containers deeper than the limit (a parse error to the client)."""


def depth_limit() -> int:
    """The configured limit, read per call so that tests and settings changes apply."""
    return settings.MEMORYWEB_LIMITS["max_json_depth"]


def depth_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` opens more than ``limit`` arrays or objects inside each other.

    For invalid JSON the answer may be either; the parser refuses that text anyway.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot be deeper than its number of openers
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    steps = brackets.translate(_STEP).encode("latin-1")
    return max(map(operator.sub, accumulate(steps), count(1)), default=0) > limit


def too_deep_message(limit: int) -> str:
    return f"JSON nested deeper than {limit} levels (MEMORYWEB_MAX_JSON_DEPTH)."


def loads(text: str | bytes, *, max_depth: int | None = None, strict: bool = True) -> Any:
    """``json.loads`` that refuses text nested deeper than ``max_depth`` (the setting by
    default) with :class:`JSONTooDeep`; every other failure is a ``ValueError`` as well.

    ``strict`` refuses NaN and Infinity, as DRF's STRICT_JSON does.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    limit = max_depth if max_depth is not None else depth_limit()
    if depth_exceeds(text, limit):
        raise JSONTooDeep(too_deep_message(limit))
    try:
        return json.loads(text, parse_constant=strict_constant if strict else None)
    except RecursionError:  # only if the limit is set near the interpreter's own
        raise JSONTooDeep(too_deep_message(limit)) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the nesting limit: deep bodies are 400 ``parse_error``
    naming the limit, other broken JSON keeps DRF's "JSON parse error - ..." message."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        raw = stream.read() if stream is not None else b""
        try:
            return loads(raw.decode(encoding), strict=self.strict)
        except JSONTooDeep as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class BoundedJSONFormField(forms.JSONField):
    """Django's form JSONField with the nesting limit: the admin's metadata and recall
    settings boxes parse what a person pastes with ``json.loads``, which raised
    ``RecursionError`` (a 500) on text nested about 1,000 deep. Deep text is a form error,
    and is shown back as typed."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and depth_exceeds(value, depth_limit()):
            raise ValidationError(too_deep_message(depth_limit()), code="invalid")
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if isinstance(data, str) and depth_exceeds(data, depth_limit()):
            return InvalidJSONInput(data)
        return super().bound_data(data, initial)
