"""Fail-open with the database unreachable, over the wire (issue 22, item 5).

The database is PostgreSQL behind a loopback TCP forwarder (tests/servers.py TcpProxy):
cutting it drops every open connection and refuses new ones, as a database host that
went away does. The vector store is the local Chroma, which stays up, so what fails is
the database alone. The clients are the official ``openai`` SDK (and httpx for exact
bytes) against a real Daphne whose upstream is the fake LLM API.

What docs/gateway.md promises, and these tests hold it to:

* a key the server authenticated moments ago is admitted from the key cache's memory of
  it (for ``MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS``); its recall then fails on the database, and the request
  goes upstream unchanged, byte for byte, streaming or not, with
  ``X-Memory-Fail-Open: error``; the event is logged (the error's type, never the
  prompt) and counted in ``memoryweb_gateway_fail_open_total{route, reason}``;
* authentication is not fail-open: a key that must be looked up in the database answers
  503 ``memoryweb_unavailable`` and nothing goes upstream;
* once the database is back, recall and injection work again (within a few seconds: after
  a failure the gateway leaves the database alone for ``key_cache.RETRY_SECONDS``).

tests/gateway/test_fail_open_grace.py holds the rest: a hung database within the budget,
an outage longer than the key cache's seconds, revoked and never-seen keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers.database_outage import (
    BODY,
    QUESTION,
    Site,
    assert_recall_comes_back,
    database_site,
)
from tests.helpers.fake_llm import REPLY, sse_bytes

pytestmark = pytest.mark.processes

#: Keys made up front: ``fresh`` and ``fresh_stream`` are first used while the database is
#: unreachable. Each test that cuts the database makes its own ``cached`` key and uses it
#: just before (the key cache remembers it for at most 60 s, the setting's maximum).
AGENTS = ("writer", "fresh", "fresh_stream")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The key cache at its longest (60 s), so a key used just before a cut is still
    remembered during it."""
    with database_site(tmp_path_factory.mktemp("database-down"), AGENTS,
                       # Generous: the first recall loads the embedding model on a busy box.
                       MEMORYWEB_GATEWAY_RECALL_BUDGET_MS="30000",
                       MEMORYWEB_KEY_CACHE_SECONDS="60",
                       MEMORYWEB_DB_CONNECT_TIMEOUT="2") as site:
        yield site


@pytest.fixture
def database_down(site) -> Iterator[Site]:
    """The database unreachable for the test, just after a new ``cached`` key's first
    request (recall and injection working), and back after it."""
    site.gateway_back()
    site.new_key("cached")
    working = site.client("cached").chat.completions.with_raw_response.create(**BODY)
    assert working.headers["x-memory-injected"] == "1", "recall must work before the cut"
    assert "x-memory-fail-open" not in working.headers
    site.database.stop()
    site.fake.reset()
    try:
        yield site
    finally:
        site.database.start()


def test_a_cached_key_is_forwarded_unchanged_when_recall_cannot_reach_the_database(database_down):
    site = database_down
    raw = json.dumps(BODY).encode()
    answer = httpx.post(site.openai_base + "/chat/completions", content=raw, timeout=60, headers={
        "authorization": f"Bearer {site.keys['cached']}", "content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == REPLY
    assert answer.headers["x-memory-fail-open"] == "error"
    assert answer.headers["x-memory-injected"] == "0"
    assert site.fake.last()["raw"] == raw  # byte for byte, no memory block


def test_the_openai_sdk_gets_its_answer_streaming_and_not(database_down):
    site = database_down
    client = site.client("cached")
    plain = client.chat.completions.with_raw_response.create(**BODY)
    assert plain.parse().choices[0].message.content == REPLY
    assert plain.headers["x-memory-fail-open"] == "error"
    assert site.fake.last()["body"] == BODY
    with client.chat.completions.with_streaming_response.create(**BODY, stream=True) as streamed:
        assert streamed.headers["x-memory-fail-open"] == "error"
        received = b"".join(streamed.iter_bytes())
    assert received == sse_bytes("/v1/chat/completions", "gpt-4o")
    assert site.fake.last()["body"] == {**BODY, "stream": True}


def test_a_key_that_must_be_looked_up_answers_503_and_nothing_goes_upstream(database_down):
    site = database_down
    with pytest.raises(openai.APIStatusError) as refused:
        site.client("fresh").chat.completions.create(**BODY)
    assert refused.value.status_code == 503
    assert refused.value.body["type"] == "memoryweb_unavailable"  # the SDK's body is the error
    assert "retry" in refused.value.body["message"]
    with pytest.raises(openai.APIStatusError) as streamed:
        site.client("fresh_stream").chat.completions.create(**BODY, stream=True)
    assert streamed.value.status_code == 503
    assert site.fake.requests == []
    assert "gateway: the key could not be checked (OperationalError)" in site.log.read_text()


def test_fail_open_is_logged_without_the_prompt_and_counted(site):
    site.gateway_back()
    site.new_key("cached")
    before = site.fail_open_count("chat", "error")
    site.client("cached").chat.completions.create(**BODY)  # working: not counted
    site.database.stop()
    try:
        answer = site.client("cached").chat.completions.with_raw_response.create(**BODY)
        assert answer.headers["x-memory-fail-open"] == "error"
    finally:
        site.database.start()
    assert site.fail_open_count("chat", "error") == before + 1
    log = site.log.read_text()
    assert "gateway fail-open on chat: recall error (OperationalError)" in log
    assert QUESTION not in log


def test_a_database_that_stops_answering_is_not_waited_on_for_ever(site):
    """New connections are accepted and never answered (``MEMORYWEB_DB_CONNECT_TIMEOUT``,
    2 s here): a key that must be looked up gets its 503 and a cached key its answer,
    instead of requests held until the client gives up."""
    site.gateway_back()
    site.new_key("hang_fresh")
    site.new_key("hang_cached")
    site.client("hang_cached").chat.completions.create(**BODY)  # known to the key cache
    site.database.hang()
    site.fake.reset()
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            site.client("hang_fresh").chat.completions.create(**BODY)
        assert refused.value.status_code == 503
        assert site.fake.requests == []
        answer = site.client("hang_cached").chat.completions.with_raw_response.create(**BODY)
        assert answer.parse().choices[0].message.content == REPLY
        assert answer.headers["x-memory-fail-open"] == "error"
    finally:
        site.database.stop()
        site.database.start()


def test_recall_and_injection_come_back_with_the_database(site):
    assert_recall_comes_back(site)
