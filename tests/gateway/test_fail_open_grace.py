"""Fail-open for the whole of a database outage, within the request's budget (issue 22,
item 5; docs/gateway.md "Fail-open").

The database is PostgreSQL behind a loopback TCP forwarder (tests/servers.py TcpProxy)
that a test cuts (``stop``: connections refused) or hangs (``hang``: connections accepted,
never answered), as in tests/gateway/test_fail_open_database.py. Here the key cache is
short (``MEMORYWEB_KEY_CACHE_SECONDS=1``) and the budget 1 s, so the tests can wait out
the cache and tell a request that waited for the connect timeout (4 s) from one that did
not. What docs/gateway.md promises:

* a key the gateway has seen is admitted from its memory of the key while the database is
  down or does not answer, for as long as ``MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS`` (not
  only the key cache's seconds), and its request goes upstream unchanged with
  ``X-Memory-Fail-Open``;
* after one failure the gateway stops trying the database for a moment, so the next
  requests do not each wait for the connect timeout (counted on the forwarder: no new
  connection);
* a key the gateway has never seen answers 503; a key revoked before the outage (in
  another process: a data fix in SQL) is refused too;
* once the database is back, recall and injection come back.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import openai
import psycopg
import pytest

from tests.helpers.database_outage import (
    BODY,
    POSTGRES,
    Site,
    assert_recall_comes_back,
    database_site,
)
from tests.helpers.fake_llm import REPLY

pytestmark = pytest.mark.processes

#: Seconds the key cache remembers a key here; the tests wait longer than this.
CACHE_SECONDS = 1
#: A wait that outlasts the key cache and lets the server's sweep of its remembered keys
#: (every CACHE_SECONDS) run at least once.
PAST_THE_CACHE = 3 * CACHE_SECONDS + 0.5
CONNECT_TIMEOUT = 4
AGENTS = ("writer", "never_seen")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    with database_site(tmp_path_factory.mktemp("database-grace"), AGENTS,
                       MEMORYWEB_GATEWAY_RECALL_BUDGET_MS="1000",
                       MEMORYWEB_KEY_CACHE_SECONDS=str(CACHE_SECONDS),
                       MEMORYWEB_DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT)) as site:
        yield site


def _seen(site: Site, agent: str) -> str:
    """A new key of ``alpha``, used once through the gateway with the database up."""
    key = site.new_key(agent)
    # After an earlier test's outage the gateway leaves the database alone for a moment
    # (its breaker): a key it has never seen answers 503 until the database is tried again.
    deadline = time.monotonic() + 30
    while (answer := _post(site, agent)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert "x-memory-fail-open" not in answer.headers
    assert answer.json()["choices"][0]["message"]["content"] == REPLY
    return key


def _post(site: Site, agent: str) -> httpx.Response:
    return httpx.post(site.openai_base + "/chat/completions", content=json.dumps(BODY).encode(),
                      timeout=60, headers={"authorization": f"Bearer {site.keys[agent]}",
                                           "content-type": "application/json"})


def _restore(site: Site) -> None:
    site.database.stop()
    site.database.start()


def test_a_hung_database_costs_a_remembered_key_its_budget_at_most_and_only_once(site):
    """Budget 1 s, connect timeout 4 s: the first request gives up on the database at its
    deadline and is forwarded; the next does not try the database again."""
    _seen(site, "hung")
    site.database.hang()
    site.fake.reset()
    try:
        started = time.perf_counter()
        first = _post(site, "hung")
        first_took = time.perf_counter() - started
        assert first.status_code == 200, first.text
        assert first.json()["choices"][0]["message"]["content"] == REPLY
        # timeout: this request gave up at its deadline; error: the server had already
        # found the database gone (its sweep of remembered keys) and did not try it.
        assert first.headers["x-memory-fail-open"] in ("timeout", "error")
        assert first_took < CONNECT_TIMEOUT - 1, f"waited {first_took:.2f} s for the database"
        # The server's sweep of remembered keys (every CACHE_SECONDS) may have begun a try
        # of its own just before the breaker opened: let its connection land, then count
        # within the breaker's 2 s before anyone may try again.
        time.sleep(CACHE_SECONDS + 0.2)
        tried = site.database.accepted
        started = time.perf_counter()
        second = _post(site, "hung")
        second_took = time.perf_counter() - started
        assert second.status_code == 200, second.text
        assert second.headers["x-memory-fail-open"] == "error"
        assert site.database.accepted == tried, "the second request tried the database again"
        assert second_took < CONNECT_TIMEOUT - 1
        assert len(site.fake.requests) == 2
        assert site.fake.last()["body"] == BODY  # unchanged: no memory block
    finally:
        _restore(site)


def test_a_remembered_key_is_forwarded_for_longer_than_the_key_cache_remembers_it(site):
    _seen(site, "long")
    time.sleep(PAST_THE_CACHE)  # idle longer than the key cache: its entry ended
    site.database.stop()
    site.fake.reset()
    try:
        for _ in range(2):
            answer = _post(site, "long")
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-memory-fail-open"] == "error"
            assert site.fake.last()["raw"] == json.dumps(BODY).encode()  # byte for byte
            time.sleep(PAST_THE_CACHE)  # the outage outlasts the key cache too
        assert len(site.fake.requests) == 2
    finally:
        site.database.start()


def test_a_key_the_gateway_never_saw_answers_503(site):
    site.database.stop()
    site.fake.reset()
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            site.client("never_seen").chat.completions.create(**BODY)
        assert refused.value.status_code == 503
        assert refused.value.body["type"] == "memoryweb_unavailable"
        assert site.fake.requests == []
    finally:
        site.database.start()


def test_a_key_revoked_before_the_outage_is_refused(site):
    """Revoked in SQL by another process (a data fix: no signal reaches the server); the
    server learns it from its sweep of the keys it remembers, before the outage."""
    raw = _seen(site, "revoked")
    with psycopg.connect(POSTGRES.rsplit("/", 1)[0] + "/" + site.database_name,
                         autocommit=True) as conn:
        done = conn.execute("UPDATE tenancy_apikey SET revoked_at = now() WHERE key_hash = %s",
                            (hashlib.sha256(raw.encode()).hexdigest(),))
        assert done.rowcount == 1
    time.sleep(PAST_THE_CACHE)
    site.database.stop()
    site.fake.reset()
    try:
        refused = _post(site, "revoked")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["type"] == "memoryweb_unavailable"
        assert site.fake.requests == []
    finally:
        site.database.start()
    deadline = time.monotonic() + 30  # and with the database back (tried again shortly)
    while (status := _post(site, "revoked").status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 401


def test_recall_and_injection_come_back_with_the_database(site):
    assert_recall_comes_back(site)
