"""Memory modes over the wire (seed 003's full / readonly / after / off): the namespace's
default, X-Memory-Mode and X-Memory-After where the namespace allows client control, a
reader key at most readonly; and the drop-in /v1/store routes storing nothing under off
and readonly. Real Daphne, the OpenAI SDK, the fake upstream."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.processes

FALCON = "The deploy script for project Falcon lives in tools/deploy.sh."
QUESTION = "Where does the deploy script for project Falcon live in the repository?"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}


@pytest.fixture(scope="module")
def falcon(site) -> str:
    return site.store("alpha_agent", FALCON)


@pytest.fixture
def namespace_mode(site):
    """Set alpha's memory_mode for a test; put back to the default after it."""
    yield lambda value: site.set_memory_mode("alpha", value)
    site.set_memory_mode("alpha", {})


def _chat(site, key: str = "alpha_agent", **headers: str) -> httpx.Response:
    """A chat completion through the gateway with the exact bytes of ``BODY``."""
    return httpx.post(site.openai_base + "/chat/completions", content=json.dumps(BODY),
                      headers={"authorization": f"Bearer {site.keys[key]}",
                               "content-type": "application/json", **headers}, timeout=60)


def _count(site) -> int:
    answer = httpx.get(f"{site.url}/api/v1/memories", timeout=30, params={"limit": 1},
                       headers={"authorization": f"Bearer {site.keys['alpha_admin']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["count"]


def test_full_is_the_default_and_injects(site, fake, falcon):
    answer = _chat(site)
    assert answer.status_code == 200
    assert (answer.headers["x-memory-mode"], answer.headers["x-memory-ids"]) == ("full", falcon)
    assert FALCON in fake.last()["body"]["messages"][0]["content"]


def test_off_forwards_the_request_byte_for_byte(site, fake, falcon):
    answer = _chat(site, **{"X-Memory-Mode": "off"})
    assert answer.status_code == 200
    assert answer.headers["x-memory-mode"] == "off"
    assert answer.headers["x-memory-injected"] == "0"
    assert "x-memory-ids" not in answer.headers
    assert fake.last()["raw"] == json.dumps(BODY).encode()


def test_readonly_and_full_both_inject_and_a_question_stores_no_memory(site, fake, falcon):
    before = _count(site)
    readonly = _chat(site, **{"X-Memory-Mode": "readonly"})
    assert (readonly.headers["x-memory-mode"], readonly.headers["x-memory-ids"]) == (
        "readonly", falcon)
    full = _chat(site, **{"X-Memory-Mode": "full"})
    assert full.headers["x-memory-ids"] == falcon
    # A question states no fact: learning (test_learning.py) has nothing to store.
    assert _count(site) == before


def test_after_recalls_only_memories_stored_since_the_date(site, fake, falcon):
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    later = _chat(site, **{"X-Memory-Mode": "after", "X-Memory-After": tomorrow})
    assert (later.headers["x-memory-mode"], later.headers["x-memory-injected"]) == ("after", "0")
    assert fake.last()["raw"] == json.dumps(BODY).encode()
    since = _chat(site, **{"X-Memory-Mode": "after", "X-Memory-After": "2000-01-01"})
    assert since.headers["x-memory-ids"] == falcon


def test_bad_mode_headers_are_400s_that_never_reach_the_upstream(site, fake, falcon):
    with pytest.raises(openai.BadRequestError) as refused:
        openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                      max_retries=0, default_headers={"X-Memory-Mode": "sometimes"}
                      ).chat.completions.create(**BODY)
    assert "X-Memory-Mode" in refused.value.message
    assert _chat(site, **{"X-Memory-Mode": "after"}).status_code == 400
    assert _chat(site, **{"X-Memory-Mode": "after", "X-Memory-After": "soon"}).status_code == 400
    assert fake.requests == []


def test_a_reader_key_is_at_most_readonly(site, fake, falcon):
    default = _chat(site, "alpha_reader")
    assert (default.headers["x-memory-mode"], default.headers["x-memory-ids"]) == (
        "readonly", falcon)
    asked = _chat(site, "alpha_reader", **{"X-Memory-Mode": "full"})
    assert asked.headers["x-memory-mode"] == "readonly"


def test_the_namespace_default_and_its_control_of_headers(site, fake, falcon, namespace_mode):
    namespace_mode({"default": "off", "allow_client_control": False})
    answer = _chat(site, **{"X-Memory-Mode": "full"})
    assert (answer.headers["x-memory-mode"], answer.headers["x-memory-injected"]) == ("off", "0")
    assert fake.last()["raw"] == json.dumps(BODY).encode()
    namespace_mode({"default": "readonly"})  # client control on (the default)
    assert _chat(site).headers["x-memory-mode"] == "readonly"
    assert _chat(site, **{"X-Memory-Mode": "off"}).headers["x-memory-mode"] == "off"


# --- the drop-in /v1/store routes -------------------------------------------------------------

def _store(site, path: str, body: dict, key: str = "alpha_agent", **headers) -> httpx.Response:
    return httpx.post(f"{site.url}/v1/{path}", json=body, timeout=60,
                      headers={"authorization": f"Bearer {site.keys[key]}", **headers})


@pytest.mark.parametrize("mode", ["off", "readonly"])
def test_v1_store_stores_nothing_under_off_and_readonly(site, mode):
    before = _count(site)
    one = _store(site, "store", {"content": f"stored under {mode}"}, **{"X-Memory-Mode": mode})
    assert one.status_code == 200, one.text
    assert one.json() == {"id": None, "version": None, "duplicate": False,
                          "stored_nothing": True, "memory_mode": mode}
    batch = _store(site, "store/batch", {"memories": [{"content": f"batch under {mode}"}]},
                   **{"X-Memory-Mode": mode})
    assert batch.status_code == 200 and batch.json()["stored"] == []
    assert _count(site) == before


def test_v1_store_follows_the_namespace_default(site, namespace_mode):
    before = _count(site)
    namespace_mode({"default": "readonly", "allow_client_control": False})
    refused = _store(site, "store", {"content": "not while readonly"}, **{"X-Memory-Mode": "full"})
    assert refused.json()["stored_nothing"] is True
    assert _count(site) == before
    namespace_mode({})
    stored = _store(site, "store", {"content": "stored under full"})
    assert stored.status_code == 200 and stored.json()["id"]
    assert _count(site) == before + 1
    # A reader is still refused as before (the mode never grants a write).
    assert _store(site, "store", {"content": "by a reader"}, "alpha_reader").status_code == 403
