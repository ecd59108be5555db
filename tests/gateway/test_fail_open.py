"""Fail-open over the wire: when recall fails (the vector store's server is stopped) or
takes longer than MEMORYWEB_GATEWAY_RECALL_BUDGET_MS, the request goes to the upstream
unchanged, byte for byte, and the answer says so (X-Memory-Fail-Open). And a route whose
upstream is not configured answers 503 (fail closed: nothing is sent anywhere)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.helpers.fake_llm import REPLY
from tests.helpers.gateway import GatewaySite, gateway_site
from tests.servers import ChromaServer

pytestmark = pytest.mark.processes

FALCON = "The deploy script for project Falcon lives in tools/deploy.sh."
#: The slow site's rate budget per key (beta's agent spends it; alpha's needs a few units),
#: per day: the budget is a sliding-window estimate, so with a per-minute one the 21
#: requests, a few seconds on a loaded machine, could straddle a minute's edge and the
#: last be let through (it happened under `pytest -n 2`).
RATE = 20
BODY = {"model": "gpt-4o", "messages": [
    {"role": "user", "content": "Where does the deploy script for project Falcon live?"}]}


def _chat(site: GatewaySite, key: str = "alpha_agent") -> httpx.Response:
    return httpx.post(site.openai_base + "/chat/completions", content=json.dumps(BODY),
                      headers={"authorization": f"Bearer {site.keys[key]}",
                               "content-type": "application/json"}, timeout=60)


@pytest.fixture(scope="module")
def slow_site(tmp_path_factory) -> Iterator[GatewaySite]:
    """A recall budget of 1 ms (no recall embeds a query and reads SQL that fast), and no
    Anthropic upstream."""
    with gateway_site(tmp_path_factory.mktemp("slow"), anthropic=False,
                      MEMORYWEB_GATEWAY_RECALL_BUDGET_MS="1",
                      MEMORYWEB_RATE_LIMIT=f"{RATE}/d") as site:
        site.store("alpha_agent", FALCON)
        yield site


def test_a_recall_over_its_budget_forwards_the_request_unchanged(slow_site):
    slow_site.fake.reset()
    answer = _chat(slow_site)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == REPLY
    assert answer.headers["x-memory-fail-open"] == "timeout"
    assert answer.headers["x-memory-injected"] == "0"
    assert slow_site.fake.last()["raw"] == json.dumps(BODY).encode()


def test_an_unset_upstream_is_a_503_and_nothing_is_sent(slow_site):
    slow_site.fake.reset()
    with pytest.raises(anthropic.APIStatusError) as refused:
        anthropic.Anthropic(base_url=slow_site.anthropic_base, max_retries=0,
                            api_key=slow_site.keys["alpha_agent"]).messages.create(
            model="claude-opus-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 503
    assert refused.value.body["error"]["type"] == "gateway_not_configured"
    assert "MEMORYWEB_GATEWAY_ANTHROPIC_URL" in refused.value.body["error"]["message"]
    assert slow_site.fake.requests == []


def test_the_keys_rate_budget_applies_before_the_upstream(slow_site):
    slow_site.fake.reset()
    answers = [_chat(slow_site, "beta_agent") for _ in range(RATE + 1)]
    assert [a.status_code for a in answers[:RATE]] == [200] * RATE
    refused = answers[RATE]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert len(slow_site.fake.requests) == RATE


def test_recall_failing_forwards_the_request_unchanged(tmp_path):
    """Chroma as a server: recall works while it runs, fails open once it is stopped."""
    chroma = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log")
    chroma.start()
    try:
        with gateway_site(tmp_path / "site", anthropic=False, CHROMA_URL=chroma.url) as site:
            falcon = site.store("alpha_agent", FALCON)
            working = _chat(site)
            assert working.headers["x-memory-ids"] == falcon
            assert "x-memory-fail-open" not in working.headers
            chroma.stop()
            site.fake.reset()
            answer = openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                                   max_retries=0).chat.completions.with_raw_response.create(**BODY)
            assert answer.parse().choices[0].message.content == REPLY
            assert answer.headers["x-memory-fail-open"] == "error"
            assert answer.headers["x-memory-injected"] == "0"
            assert site.fake.last()["body"] == BODY
            assert "fail-open on chat: recall error (Unavailable" in (
                tmp_path / "site" / "daphne.log").read_text()
    finally:
        chroma.stop()


def test_a_hung_memory_core_fails_open_without_holding_the_servers_threads(tmp_path):
    """Chroma stops answering (a listener on its port that never accepts): recalls past
    their budget keep their threads, but only the gateway's few recall threads. Once those
    are taken, requests fail open at once (``busy``), and the rest of the server (admission,
    REST) still answers."""
    chroma = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log")
    chroma.start()
    blackhole = None
    try:
        # 4 request threads, so 2 recall threads; a budget any hung recall overruns.
        with gateway_site(tmp_path / "site", anthropic=False, CHROMA_URL=chroma.url,
                          MEMORYWEB_HTTP_THREADS="4", MEMORYWEB_CHROMA_TIMEOUT="120",
                          MEMORYWEB_GATEWAY_RECALL_BUDGET_MS="2000") as site:
            falcon = site.store("alpha_agent", FALCON)
            assert _chat(site).headers["x-memory-ids"] == falcon  # the client is built
            chroma.stop()
            blackhole = socket.socket()
            blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blackhole.bind(("127.0.0.1", chroma.port))
            blackhole.listen(64)  # connections complete; no answer ever comes
            site.fake.reset()
            reasons = []
            for _ in range(6):  # more than the request threads: before, the 5th never answered
                answer = _chat(site)
                assert answer.status_code == 200, answer.text
                assert answer.json()["choices"][0]["message"]["content"] == REPLY
                reasons.append(answer.headers["x-memory-fail-open"])
            assert reasons == ["timeout", "timeout", "busy", "busy", "busy", "busy"]
            assert [r["body"] for r in site.fake.requests] == [BODY] * 6
            namespace = httpx.get(f"{site.url}/api/v1/namespaces/alpha", timeout=30,
                                  headers={"Authorization": f"Bearer {site.keys['alpha_admin']}"})
            assert namespace.status_code == 200
            # Closing the listener resets the hung connections: the recall threads end (a
            # server stopping waits for them, as for any request still running).
            blackhole.close()
            blackhole = None
    finally:
        if blackhole is not None:
            blackhole.close()
        chroma.stop()
