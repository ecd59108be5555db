"""Deeply nested JSON is a 400 ``parse_error`` on every JSON route, never a 500.

Python's JSON decoder recurses once per level; about 1,000 levels deep it raised
RecursionError, which DRF's parser did not map, so each such body was a 500 with a long
traceback in the log, on unauthenticated routes too. The project's parser
(apps/core/parsers.py) refuses bodies nested deeper than ``MEMORYWEB_MAX_JSON_DEPTH``
before parsing them.
"""

from __future__ import annotations

import json

import pytest

from apps.core.parsers import JSONTooDeep, depth_exceeds, loads
from apps.memories.models import Memory

DEEP = '{"content": "deep", "metadata": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"

#: (method, path, who): every kind of JSON route: the REST API, both drop-in doors, the
#: unauthenticated key check, bodies on PUT and DELETE.
ROUTES = [
    ("post", "/api/v1/memories", "agent"),
    ("post", "/api/v1/memories/batch", "agent"),
    ("post", "/api/v1/recall", "agent"),
    ("post", "/api/v1/ingest_and_recall", "agent"),
    ("post", "/api/v1/namespaces/alpha/grants", "admin"),
    ("patch", "/api/v1/namespaces/alpha", "admin"),
    ("post", "/cmm/ingest", "agent"),
    ("put", "/cmm/memory/1", "admin"),
    ("post", "/v1/store", "agent"),
    ("post", "/v1/store/batch", "agent"),
    ("delete", "/v1/forget", "admin"),
    ("post", "/v1/auth/token", "anonymous"),
]


def nested(levels: int) -> str:
    """A body whose deepest value sits ``levels`` containers down (the outer object is 1)."""
    inner = "[" * (levels - 2) + "1" + "]" * (levels - 2)
    return '{"content": "nested", "metadata": {"a": ' + inner + "}}"


@pytest.mark.parametrize(("method", "path", "who"), ROUTES)
def test_deep_json_is_a_400_parse_error(callers, method, path, who):
    caller = callers[who]
    if path == "/cmm/memory/1":  # the route finds the memory before it reads the body
        assert callers["agent"].post("/cmm/ingest", {"gist": "one"}).status_code == 201
    before = list(Memory.objects.values_list("pk", "version"))
    response = getattr(caller.client, method)(path, DEEP, content_type="application/json")
    assert response.status_code == 400, response.content
    body = response.json()
    code = body["error"]["code"] if isinstance(body["error"], dict) else body["code"]
    assert code == "parse_error"
    assert "nested deeper than 64" in json.dumps(body)
    assert list(Memory.objects.values_list("pk", "version")) == before


def test_the_limit_is_exact_and_documented(settings, agent):
    """At the limit the body is parsed (the metadata's own rules then judge it: a field
    error, not a parse error); one level more is refused unparsed."""
    assert settings.MEMORYWEB_LIMITS["max_json_depth"] == 64
    at_limit = agent.client.post("/api/v1/memories", nested(64), content_type="application/json")
    assert at_limit.json().get("error", {}).get("code") != "parse_error", at_limit.content
    over = agent.client.post("/api/v1/memories", nested(65), content_type="application/json")
    assert over.status_code == 400 and over.json()["error"]["code"] == "parse_error"
    settings.MEMORYWEB_LIMITS = {**settings.MEMORYWEB_LIMITS, "max_json_depth": 16}
    shallow = '{"content": "shallow", "metadata": {"a": ' + "[" * 15 + "]" * 15 + "}}"
    refused = agent.client.post("/api/v1/memories", shallow, content_type="application/json")
    assert refused.json()["error"]["code"] == "parse_error"
    assert "nested deeper than 16" in refused.json()["error"]["message"]
    assert not Memory.objects.filter(content="shallow").exists()


def test_other_parse_errors_keep_their_message(agent):
    response = agent.client.post("/api/v1/memories", '{"content": NaN}',
                                 content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["message"].startswith("JSON parse error")


@pytest.mark.parametrize(("text", "levels"), [
    ("1", 0), ("[]", 1), ('{"a": [{"b": []}]}', 4),
    ('"[[[[[[[[[["', 0),  # brackets inside a string are text
    ('["\\"[[[[[[", []]', 2),  # an escaped quote does not end the string
    ('[' * 10 + ']' * 10, 10),
])
def test_depth_counts_containers_not_text(text, levels):
    assert not depth_exceeds(text, levels)
    if levels:
        assert depth_exceeds(text, levels - 1)


def test_loads_refuses_deep_and_broken_text_alike():
    with pytest.raises(JSONTooDeep, match="nested deeper than 3 levels"):
        loads("[[[[1]]]]", max_depth=3)
    assert loads("[[[1]]]", max_depth=3) == [[[1]]]
    # Unterminated strings full of escaped quotes are scanned once, not once per quote.
    with pytest.raises(ValueError):
        loads('"' + '\\"[' * 200_000, max_depth=3)
