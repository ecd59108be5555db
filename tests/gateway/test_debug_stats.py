"""``GET /proxy/v1/debug/stats`` (seed 003): a namespace key sees its namespace's numbers
(memory mode, learning, the last day of traces when kept), a system-admin key also the
process's counters; never text, never another tenant's numbers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.embedded import embedded_environment, manage
from tests.helpers.gateway import gateway_site
from tests.helpers.learning import facts, wait_for

pytestmark = pytest.mark.processes

FACT = "Remember that the staging database is on host db-2."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("stats")
    with gateway_site(base / "site") as site:
        env = embedded_environment(base / "site" / "data")
        root = manage(env, "create_api_key", "--system-admin", "--name", "root").splitlines()[-1]
        yield {"site": site, "root": root, "data": base / "site" / "data"}


def _stats(world, key: str, **headers: str) -> httpx.Response:
    raw = world["root"] if key == "root" else world["site"].keys[key]
    return httpx.get(f"{world['site'].openai_base}/debug/stats", timeout=30,
                     headers={"Authorization": f"Bearer {raw}", **headers})


def _chat(world, text: str) -> None:
    answer = httpx.post(f"{world['site'].openai_base}/chat/completions", timeout=60,
                        headers={"Authorization": f"Bearer {world['site'].keys['alpha_agent']}"},
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    assert answer.status_code == 200, answer.text


def test_a_namespace_key_sees_its_namespace(world):
    answer = _stats(world, "alpha_reader")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["namespace"] == "alpha" and "process" not in body
    # A reader key is at most readonly.
    assert body["memory_mode"] == {"mode": "readonly", "recall": True, "store": False,
                                   "client_control": True}
    assert body["traces"] == {"level": "off"}

    _chat(world, FACT)
    wait_for(lambda: facts(world["data"]), "the fact in quarantine")
    learning = _stats(world, "alpha_agent").json()["learning"]
    assert learning["quarantined"] == 1 and learning["promoted"] == 0
    # beta learned nothing from alpha's exchange.
    assert _stats(world, "beta_agent").json()["learning"]["quarantined"] == 0


def test_traces_are_summarised_when_the_namespace_keeps_them(world):
    admin = world["site"].keys["alpha_admin"]
    patched = httpx.patch(f"{world['site'].url}/api/v1/namespaces/alpha", timeout=30,
                          json={"gateway": {"trace": "metadata"}},
                          headers={"Authorization": f"Bearer {admin}"})
    assert patched.status_code == 200, patched.text
    _chat(world, "What is on host db-2?")
    traces = wait_for(lambda: (t := _stats(world, "alpha_agent").json()["traces"]).get(
        "requests") and t, "a trace")
    assert traces["level"] == "metadata" and traces["requests"] >= 1
    assert set(traces) >= {"window_hours", "injected", "screened_out", "fail_open",
                           "added_ms_mean"}


def test_a_system_admin_sees_the_process_and_names_a_namespace(world):
    _chat(world, "Hello there")  # a request of this process, whatever ran before
    whole = _stats(world, "root").json()
    assert whole["namespace"] is None
    requests = whole["process"]["requests_total"]
    assert requests["mode=full,route=chat"] >= 1
    named = _stats(world, "root", **{"X-Memory-Namespace": "beta"}).json()
    assert named["namespace"] == "beta" and "process" in named


def test_refusals(world):
    assert _stats(world, "alpha_agent", **{"X-Memory-Namespace": "beta"}).status_code == 404
    assert httpx.get(f"{world['site'].openai_base}/debug/stats", timeout=30).status_code == 401
    posted = httpx.post(f"{world['site'].openai_base}/debug/stats", timeout=30, headers={
        "Authorization": f"Bearer {world['site'].keys['alpha_agent']}"})
    assert posted.status_code == 405
