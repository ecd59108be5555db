"""Gateway request traces over the wire: the official OpenAI SDK through a real Daphne and
the fake upstream. At ``metadata`` a trace row names the injected memory's id and holds no
text; at ``content`` it holds the recall query (redacted); at ``off`` nothing is written.
Each request uses its own model name, so a row is found by it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import learning
from tests.helpers.fake_llm import REPLY
from tests.helpers.gateway import GatewaySite, gateway_site

pytestmark = pytest.mark.processes

FALCON = "The deploy script for project Falcon lives in tools/deploy.sh."
QUESTION = "Where does the deploy script for project Falcon live in the repository?"
SECRET = "sk-proj-Zyxwvutsrqponmlk9876543210ABC"


@dataclass
class Traced:
    site: GatewaySite
    data: Path
    falcon: str


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Iterator[Traced]:
    base = tmp_path_factory.mktemp("traces")
    with gateway_site(base) as site:
        yield Traced(site, base / "data", site.store("alpha_agent", FALCON))


def _set_trace(traced: Traced, level: str) -> None:
    answer = httpx.patch(f"{traced.site.url}/api/v1/namespaces/alpha",
                         json={"gateway": {"trace": level}}, timeout=30,
                         headers={"Authorization": f"Bearer {traced.site.keys['alpha_admin']}"})
    assert answer.status_code == 200, answer.text


def _ask(traced: Traced, model: str, text: str = QUESTION):
    client = openai.OpenAI(base_url=traced.site.openai_base, max_retries=0, timeout=60,
                           api_key=traced.site.keys["alpha_agent"])
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}],
        extra_headers={"X-Memory-Mode": "readonly"})  # nothing learned: only the trace
    assert raw.parse().choices[0].message.content == REPLY
    return raw


def _rows(traced: Traced, model: str) -> list[tuple]:
    return learning.query(
        traced.data, "SELECT t.level, t.api, t.mode, t.injected, t.memory_ids, t.query, "
        "t.upstream_status, t.fail_open FROM gateway_gatewaytrace t JOIN tenancy_namespace n "
        "ON n.id = t.namespace_id WHERE n.slug = 'alpha' AND t.model = ?", model)


def _wait(traced: Traced, model: str) -> tuple:
    (row,) = learning.wait_for(lambda: _rows(traced, model), f"a trace of {model}", 60)
    return row


def test_metadata_content_and_off(traced):
    _set_trace(traced, "metadata")
    answer = _ask(traced, "gpt-4o-trace-metadata")
    assert answer.headers["x-memory-ids"] == traced.falcon
    level, api, mode, injected, ids, query, status, fail_open = _wait(traced,
                                                                       "gpt-4o-trace-metadata")
    assert (level, api, mode, injected, status, fail_open) == (
        "metadata", "chat", "readonly", 1, 200, "")
    assert traced.falcon in ids and query == ""

    _set_trace(traced, "content")
    _ask(traced, "gpt-4o-trace-content", f"{QUESTION} My key is {SECRET}.")
    row = _wait(traced, "gpt-4o-trace-content")
    assert row[0] == "content" and traced.falcon in row[4]
    assert row[5].startswith(QUESTION) and SECRET not in row[5] and "[REDACTED" in row[5]

    _set_trace(traced, "off")
    _ask(traced, "gpt-4o-trace-off")
    _set_trace(traced, "metadata")
    _ask(traced, "gpt-4o-trace-after")
    _wait(traced, "gpt-4o-trace-after")  # the later request's trace is written...
    assert _rows(traced, "gpt-4o-trace-off") == []  # ...and the one at off never was
    assert learning.files_holding(traced.data, SECRET) == []
