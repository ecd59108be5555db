"""An upstream that breaks off mid-answer is never relayed as a clean end
(apps/gateway/relay.py): the official SDKs raise, what arrived before the break arrives
unchanged and in order, and the half answer is not learned from."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.gateway import metrics_page
from tests.helpers.fake_llm import PIECES, Failure

pytestmark = pytest.mark.processes

QUESTION = "Where does the deploy script for project Falcon live?"
BROKE_OFF = "memoryweb_gateway_upstream_broke_off_total"


def _broke_off(site, route: str) -> float:
    return metrics_page.value(site.url, BROKE_OFF, route=route)


def _counted_once(site, route: str, before: float) -> None:
    """The break was counted once on ``route`` (counted as the relay ends, which may be
    just after the client saw the error: waited for)."""
    metrics_page.reached(site.url, BROKE_OFF, before + 1, route=route)
    assert _broke_off(site, route) == before + 1


def _openai(site) -> openai.OpenAI:
    return openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                         max_retries=0, timeout=60)


def _anthropic(site) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=site.anthropic_base, api_key=site.keys["alpha_agent"],
                               max_retries=0, timeout=60)


def test_a_chat_stream_that_breaks_off_raises_in_the_sdk(site, fake):
    before = _broke_off(site, "chat")
    fake.failures["/v1/chat/completions"] = [Failure(break_after=4)]  # role + 3 pieces
    stream = _openai(site).chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": QUESTION}])
    deltas = []
    with pytest.raises(openai.APIError, match="broke off mid-answer"):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
    assert deltas == PIECES[:3]  # what came before the break, in order, unchanged
    _counted_once(site, "chat", before)


def test_a_responses_stream_that_breaks_off_raises_in_the_sdk(site, fake):
    before = _broke_off(site, "responses")
    fake.failures["/v1/responses"] = [Failure(break_after=3)]  # created + 2 deltas
    events = _openai(site).responses.create(model="gpt-4o", input=QUESTION, stream=True)
    deltas = []
    with pytest.raises(openai.APIError, match="broke off mid-answer"):
        for event in events:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    assert deltas == PIECES[:2]
    _counted_once(site, "responses", before)


def test_an_anthropic_stream_that_breaks_off_raises_in_the_sdk(site, fake):
    before = _broke_off(site, "anthropic")
    fake.failures["/v1/messages"] = [Failure(break_after=4)]  # start, block start, 2 deltas
    text = []
    with pytest.raises(anthropic.APIError, match="broke off mid-answer"):
        with _anthropic(site).messages.stream(
                model="claude-opus-4-6", max_tokens=100,
                messages=[{"role": "user", "content": QUESTION}]) as stream:
            text.extend(stream.text_stream)
    assert text == PIECES[:2]
    _counted_once(site, "anthropic", before)


@pytest.mark.parametrize("path, body, key_header", [
    ("/proxy/v1/chat/completions",
     {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}, "authorization"),
    ("/proxy/anthropic/v1/messages",
     {"model": "claude-opus-4-6", "max_tokens": 10,
      "messages": [{"role": "user", "content": QUESTION}]}, "x-api-key"),
])
def test_a_json_answer_that_breaks_off_is_a_502_not_a_truncated_body(site, fake, path, body,
                                                                      key_header):
    route = "anthropic" if "anthropic" in path else "chat"
    before = _broke_off(site, route)
    upstream = path.removeprefix("/proxy").removeprefix("/anthropic")
    fake.failures[upstream] = [Failure(break_after=20)]
    key = site.keys["alpha_agent"]
    headers = {"authorization": f"Bearer {key}"} if key_header == "authorization" else {
        "x-api-key": key}
    answer = httpx.post(site.url + path, json=body, headers=headers, timeout=60)
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert "broke off mid-answer" in error["message"]
    assert error["type"] == "upstream_unavailable"
    assert _broke_off(site, route) == before + 1  # counted before the 502 was sent


def test_the_sdks_see_a_broken_json_answer_as_a_server_error(site, fake):
    fake.failures["/v1/chat/completions"] = [Failure(break_after=20)]
    with pytest.raises(openai.InternalServerError) as failed:
        _openai(site).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert failed.value.status_code == 502


def _learning(site) -> int:
    stats = httpx.get(f"{site.openai_base}/debug/stats", timeout=30,
                      headers={"authorization": f"Bearer {site.keys['alpha_agent']}"}).json()
    learning = stats["learning"]
    return learning["quarantined"] + learning["promoted"] + learning["exchanges_queued"]


def test_a_broken_answer_is_not_learned_from(site, fake):
    before = _learning(site)
    fake.failures["/v1/chat/completions"] = [Failure(break_after=4)]
    with pytest.raises(openai.APIError):
        for _ in _openai(site).chat.completions.create(model="gpt-4o", stream=True, messages=[
                {"role": "user", "content": "Remember that the broken release is 4.2."}]):
            pass
    # A whole answer after it is learned: once it shows, the broken one would have too.
    for _ in _openai(site).chat.completions.create(model="gpt-4o", stream=True, messages=[
            {"role": "user", "content": "Remember that the whole release is 5.1."}]):
        pass
    deadline = time.monotonic() + 60
    while _learning(site) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _learning(site) == before + 1
