"""The gateway learns through a model extractor (``MEMORYWEB_GATEWAY_EXTRACTOR=openai``,
the fake LLM API standing in for it), over the wire: secrets planted in the user's
message never reach the extraction request nor any file of the data directory; streamed
answers are reassembled for each API shape and sent to the extractor; an extractor
answering 500 leaves the exchange queued, nothing half-stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from apps.gateway.extract import SYSTEM_PROMPT
from tests.gateway import metrics_page
from tests.helpers import learning
from tests.helpers.fake_llm import REPLY, Failure, FakeLLM
from tests.helpers.gateway import GatewaySite, gateway_site

pytestmark = pytest.mark.processes

CHAT = "/v1/chat/completions"
#: Planted secrets, assembled from fragments so no scanner mistakes this file for a leak.
SECRETS = {
    "api key": "sk-" + "proj-" + "Qw3eRt6yUi9oPa2sDf5gHj8kLz1xCv4b",
    "password": "Tr0ub4dor" + "-and-3",
    "private key": "MIIEowIBAAKCAQEA" + "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t",
    "connection string": "Sup3r" + "S3cret-pw",
}
PLANTED = ("Remember that the Avocet billing service talks to the ledger. For the record, "
           f"its key is {SECRETS['api key']} and DB_PASSWORD={SECRETS['password']}.\n"
           "-----BEGIN " + "RSA PRIVATE KEY-----\n" + SECRETS["private key"] + "\n-----END "
           + "RSA PRIVATE KEY-----\n"
           f"DATABASE_URL=postgres://avocet:{SECRETS['connection string']}@db.internal/avocet")


@dataclass
class Learned:
    site: GatewaySite
    data: Path
    #: The extraction model: a second fake LLM API, so its record holds only extractions.
    extractor: FakeLLM


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Iterator[Learned]:
    base = tmp_path_factory.mktemp("learning-model")
    base.mkdir(parents=True, exist_ok=True)
    (base / "extractor.key").write_text("sk-extractor-Jm4Kq8\n")
    with FakeLLM() as extractor, gateway_site(
            base, MEMORYWEB_GATEWAY_EXTRACTOR="openai",
            MEMORYWEB_GATEWAY_EXTRACTOR_URL=extractor.openai_url,
            MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE=str(base / "extractor.key"),
            MEMORYWEB_METRICS_TOKEN=metrics_page.TOKEN) as site:
        yield Learned(site, base / "data", extractor)


@pytest.fixture
def model(learned) -> FakeLLM:
    """The extraction model's fake, its record emptied (and the chat upstream's)."""
    learned.site.fake.reset()
    learned.extractor.reset()
    return learned.extractor


def _extractions(model: FakeLLM) -> list[dict]:
    found = [r for r in list(model.requests) if r["path"] == CHAT]
    assert all(r["body"]["messages"][0]["content"] == SYSTEM_PROMPT for r in found)
    return found


def _facts_reply(*facts: str) -> Failure:
    return Failure(reply=json.dumps({"facts": list(facts)}))


def test_planted_secrets_reach_neither_the_extractor_nor_the_disk(learned, model):
    site = learned.site
    model.failures[CHAT] = [_facts_reply(
        "The Avocet billing service talks to the ledger.",
        f"The Avocet key is {SECRETS['api key']}.")]  # a model that invents one: redacted too
    client = openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                           max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="gpt-4o",
                                            messages=[{"role": "user", "content": PLANTED}])
    assert answer.choices[0].message.content == REPLY
    # The exchange's facts are applied one transaction each: wait for both.
    def both() -> dict | None:
        facts = learning.facts(learned.data)
        return facts if len(facts) >= 2 else None

    found = learning.wait_for(both, "the model's two facts")
    assert "The Avocet billing service talks to the ledger." in found
    assert "The Avocet key is [REDACTED:openai]." in found
    (extraction,) = _extractions(model)
    assert extraction["headers"]["authorization"] == "Bearer sk-extractor-Jm4Kq8"
    sent = extraction["raw"].decode()
    assert "Avocet billing service" in sent and REPLY in sent
    for name, secret in SECRETS.items():
        assert secret not in sent, f"the {name} reached the extractor"
        assert learning.files_holding(learned.data, secret) == [], f"the {name} is on disk"


@pytest.mark.parametrize("shape", ["chat", "responses", "anthropic"])
def test_a_streamed_answer_reaches_the_extractor_reassembled(learned, model, shape):
    site = learned.site
    said = f"Remember that the Godwit {shape} worker restarts nightly."
    model.failures[CHAT] = [_facts_reply(f"The Godwit {shape} worker restarts nightly.")]
    if shape == "anthropic":
        client = anthropic.Anthropic(base_url=site.anthropic_base, api_key=site.keys[
            "alpha_agent"], max_retries=0, timeout=60)
        with client.messages.stream(model="claude-opus-4-6", max_tokens=64,
                                    messages=[{"role": "user", "content": said}]) as stream:
            assert "".join(stream.text_stream) == REPLY
    else:
        client = openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                               max_retries=0, timeout=60)
        if shape == "chat":
            chunks = client.chat.completions.create(
                model="gpt-4o", stream=True, messages=[{"role": "user", "content": said}])
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
        else:
            events = client.responses.create(model="gpt-4o", stream=True, input=said)
            assert "".join(e.delta for e in events
                           if e.type == "response.output_text.delta") == REPLY
    fact = f"The Godwit {shape} worker restarts nightly."
    learning.wait_for(lambda: fact in learning.facts(learned.data), fact)
    (extraction,) = _extractions(model)
    content = extraction["body"]["messages"][1]["content"]
    assert content == f"USER:\n{said}\n\nASSISTANT:\n{REPLY}"


def test_an_extractor_failing_leaves_the_exchange_queued(learned, model):
    site = learned.site
    failures = "memoryweb_gateway_learn_failures_total"
    before = metrics_page.value(site.url, failures, stage="extract")
    model.failures[CHAT] = [Failure(status=500, body={"error": {"message": "down"}})]
    client = openai.OpenAI(base_url=site.openai_base, api_key=site.keys["alpha_agent"],
                           max_retries=0, timeout=60)
    said = "Remember that the Curlew archive is read-only."
    answer = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": said}])
    assert answer.status_code == 200  # the client's answer never depends on learning
    row = learning.wait_for(lambda: learning.query(
        learned.data, "SELECT attempts, last_error, facts, user_text FROM "
        "gateway_pendingexchange WHERE attempts > 0 AND claimed_until IS NULL"), "a failed try")
    ((attempts, error, facts, user_text),) = row
    assert attempts == 1 and "500" in error and facts is None
    assert user_text == said  # kept (redacted) for the retry: not lost
    assert not [t for t in learning.facts(learned.data) if "Curlew" in t]  # nothing half-stored
    # Counted before the row shows the failure (the retry is 30 s away: no second one yet).
    assert metrics_page.value(site.url, failures, stage="extract") == before + 1
