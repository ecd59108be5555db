"""The gateway learns from exchanges, over the wire: the official SDKs through a real
Daphne with the offline extractor. A stated fact lands in quarantine (not injected), is
promoted when stated again (then injected), duplicates strengthen, readonly/off and reader
keys learn nothing, and a fact of one namespace never reaches another."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.gateway import metrics_page
from tests.helpers import learning
from tests.helpers.fake_llm import REPLY
from tests.helpers.gateway import GatewaySite, gateway_site

pytestmark = pytest.mark.processes
METRICS_TOKEN = "metrics-token-learning-7Rt2"


@dataclass
class Learned:
    site: GatewaySite
    data: Path


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Iterator[Learned]:
    base = tmp_path_factory.mktemp("learning")
    with gateway_site(base, MEMORYWEB_METRICS_TOKEN=METRICS_TOKEN) as site:
        yield Learned(site, base / "data")


def _chat(learned: Learned, text: str, key: str = "alpha_agent", **headers: str):
    client = openai.OpenAI(base_url=learned.site.openai_base, api_key=learned.site.keys[key],
                           max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], extra_headers=headers)
    assert raw.parse().choices[0].message.content == REPLY
    return raw


def _metric(learned: Learned, name: str, **labels: str) -> float:
    return metrics_page.value(learned.site.url, name, METRICS_TOKEN, **labels)


def _fact(learned: Learned, text: str, namespace: str = "alpha", state: str = "quarantined"):
    """The fact's (state, seen count, agent) once it is in ``state``."""
    return learning.wait_for(lambda: (found := learning.facts(learned.data, namespace).get(text))
                             and found[0] == state and found, f"{text!r} {state}")


def test_a_stated_fact_is_quarantined_then_promoted_and_injected(learned):
    site = learned.site
    said = "Remember that the Heron release train leaves every second Thursday."
    fact = "The Heron release train leaves every second Thursday."
    first = _chat(learned, said)
    assert first.headers["x-memory-mode"] == "full"
    assert _fact(learned, fact) == ("quarantined", 1, "alpha_agent")

    question = "When does the Heron release train leave, which Thursday of the month?"
    asked = _chat(learned, question)
    assert asked.headers["x-memory-injected"] == "0"  # quarantine is never injected
    assert "Heron release train leaves" not in site.fake.last()["raw"].decode()

    _chat(learned, "Note: the Heron release train leaves every second Thursday")
    assert _fact(learned, fact, state="promoted")[1] == 2
    answer = _chat(learned, question)
    assert answer.headers["x-memory-injected"] == "1"
    system = site.fake.last()["body"]["messages"][0]
    assert system["role"] == "system" and fact in system["content"]


def test_a_repeated_memory_is_strengthened_not_quarantined(learned):
    site = learned.site
    text = "We use the Kestrel queue for every background job."
    memory_id = site.store("alpha_agent", text)
    strengthened = "memoryweb_gateway_memories_strengthened_total"
    before = _metric(learned, strengthened)
    _chat(learned, "we use the Kestrel queue for every background job")
    _chat(learned, "Remember that the Kestrel dashboard lives at /ops/kestrel.")  # a barrier
    _fact(learned, "The Kestrel dashboard lives at /ops/kestrel.")
    strengthened = learning.query(learned.data, "SELECT actor, record_ids FROM "
                                  "audit_auditentry WHERE operation = 'gateway.strengthen'")
    assert any(memory_id in ids for _, ids in strengthened)
    assert _metric(learned, "memoryweb_gateway_memories_strengthened_total") == before + 1
    assert text not in learning.facts(learned.data)
    assert not [t for t in learning.facts(learned.data) if "Kestrel queue" in t]


@pytest.mark.parametrize(("key", "mode"), [("alpha_agent", "readonly"), ("alpha_agent", "off"),
                                           ("alpha_reader", "full")])
def test_readonly_off_and_reader_keys_learn_nothing(learned, key, mode):
    said = f"Remember that the Plover build uses the {mode} {key} toolchain."
    answer = _chat(learned, said, key=key, **{"X-Memory-Mode": mode})
    assert answer.headers.get("x-memory-mode", "off") in ("readonly", "off")
    barrier = f"Remember that the Plover barrier for {mode} {key} is green."
    _chat(learned, barrier)  # queued after: once it is learned, the first would be too
    _fact(learned, barrier.replace("Remember that the", "The"))
    assert not [text for text in learning.facts(learned.data) if "toolchain" in text]


def test_mode_after_learns_as_full_does(learned):
    answer = _chat(learned, "Remember that the Tern backups run at 02:00 UTC.",
                   **{"X-Memory-Mode": "after", "X-Memory-After": "2020-01-01"})
    assert answer.headers["x-memory-mode"] == "after"
    assert _fact(learned, "The Tern backups run at 02:00 UTC.")[0] == "quarantined"


def test_streamed_exchanges_are_learned_for_each_api_shape(learned):
    site = learned.site
    chat = openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                         max_retries=0, timeout=60)
    stream = chat.chat.completions.create(
        model="gpt-4o", stream=True,
        messages=[{"role": "user", "content": "Remember that the Wren API runs on port 8141."}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY
    events = chat.responses.create(model="gpt-4o", stream=True,
                                   input="Remember that the Wren cache holds 4 GB.")
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    claude = anthropic.Anthropic(base_url=site.anthropic_base, api_key=site.keys["alpha_agent"],
                                 max_retries=0, timeout=60)
    with claude.messages.stream(model="claude-opus-4-6", max_tokens=64, messages=[
            {"role": "user", "content": "Remember that the Wren logs go to /var/log/wren."}]) as s:
        assert "".join(s.text_stream) == REPLY
    for fact in ("The Wren API runs on port 8141.", "The Wren cache holds 4 GB.",
                 "The Wren logs go to /var/log/wren."):
        assert _fact(learned, fact)[0] == "quarantined"


def test_a_fact_of_one_namespace_is_not_a_sighting_in_another(learned):
    said = "Remember that the Ibis service owner is team Lark."
    _chat(learned, said, key="beta_agent")
    _chat(learned, said, key="alpha_agent")
    fact = "The Ibis service owner is team Lark."
    assert _fact(learned, fact, namespace="beta") == ("quarantined", 1, "beta_agent")
    assert _fact(learned, fact, namespace="alpha") == ("quarantined", 1, "alpha_agent")
    assert learning.wait_for(lambda: learning.pending(learned.data) == 0 or None, "queue empty")


def test_the_metrics_count_requests_learning_and_the_added_latency(learned):
    grown = {  # (series, labels): how much the two exchanges below add
        ("memoryweb_gateway_requests_total", ("mode", "full"), ("route", "chat")): 2,
        ("memoryweb_gateway_added_latency_seconds_count", ("route", "chat")): 2,
        ("memoryweb_gateway_exchanges_queued_total", ("route", "chat")): 2,
        ("memoryweb_gateway_facts_extracted_total", ("extractor", "offline")): 2,
        ("memoryweb_gateway_facts_quarantined_total",): 1,
        ("memoryweb_gateway_facts_promoted_total", ("how", "seen")): 1}

    before = {series: _metric(learned, series[0], **dict(series[1:])) for series in grown}
    _chat(learned, "Remember that the Shrike queue drains every five minutes.")
    _fact(learned, "The Shrike queue drains every five minutes.")
    _chat(learned, "Remember that the Shrike queue drains every five minutes.")
    _fact(learned, "The Shrike queue drains every five minutes.", state="promoted")
    # A promotion is counted just after its commit shows: each series is waited for.
    after = {series: metrics_page.reached(learned.site.url, series[0], before[series] + n,
                                          METRICS_TOKEN, **dict(series[1:]))
             for series, n in grown.items()}
    assert {series: after[series] - before[series] for series in grown} == grown
    page = httpx.get(f"{learned.site.url}/metrics", timeout=30,
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    # Bounded labels: no namespace, key or text in any of the gateway's series.
    gateway_lines = [line for line in page.splitlines()
                     if line.startswith("memoryweb_gateway_")]
    assert gateway_lines
    assert not [line for line in gateway_lines if "alpha" in line or "Shrike" in line]
