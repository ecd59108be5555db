"""The gateway's learning without a server: the offline extractor, when two facts are one,
reassembling an answer from each API's SSE events, the settings check, and the model
extractor against the fake LLM API (a thread in this process)."""

from __future__ import annotations

import gzip
import json

import pytest
from django.core.checks import Error

from apps.core.checks import check_gateway
from apps.gateway import answers, extract, facts
from tests.helpers.fake_llm import ANSWERS, REPLY, Failure, FakeLLM

# --- the offline extractor ---------------------------------------------------------------

OFFLINE = extract.HeuristicExtractor()


def _facts(user: str, assistant: str = "Sure.") -> list[str]:
    return OFFLINE.extract(extract.Exchange(user, assistant))


@pytest.mark.parametrize(("said", "fact"), [
    ("Remember that the staging database is on host db-2.", "The staging database is on host db-2."),
    ("Note: deploys happen on Tuesdays at 14:00 UTC", "Deploys happen on Tuesdays at 14:00 UTC."),
    ("My favourite editor is Helix.", "My favourite editor is Helix."),
    ("We use pnpm, not npm, in this repo.", "We use pnpm, not npm, in this repo."),
    ("I prefer tabs over spaces for Go code.", "I prefer tabs over spaces for Go code."),
    ("We decided to drop Python 3.9 support.", "We decided to drop Python 3.9 support."),
    ("Hi! Our CI runs on Buildkite agents.", "Our CI runs on Buildkite agents."),
    ("Let's go with SQLite for the prototype.", "Let's go with SQLite for the prototype."),
])
def test_the_offline_extractor_keeps_declarative_facts(said, fact):
    assert _facts(said) == [fact]


@pytest.mark.parametrize("said", [
    "Where is the deploy script?",
    "How do I run the tests",
    "Hello there!",
    "Thanks, that worked.",
    "```python\nmy_value = 3  # my value is three\n```",
    "    my_config = load()",
    "Can you check whether we use pnpm?",
    "The weather is nice.",
    "ok",
])
def test_the_offline_extractor_skips_questions_greetings_and_code(said):
    assert _facts(said) == []


def test_the_offline_extractor_never_learns_from_the_answer():
    assert _facts("Please fix the bug.", "My name is GPT and we use Rust everywhere.") == []


def test_the_offline_extractor_redacts_what_it_keeps():
    key = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    (fact,) = _facts(f"Remember that our deploy key is {key} for now.")
    assert key not in fact and "[REDACTED:openai]" in fact


# --- one fact or two ---------------------------------------------------------------------

@pytest.mark.parametrize(("one", "other", "same"), [
    ("Remember that our DB is Postgres 16!", "our db is postgres 16", True),
    ("We deploy on Fridays.", "We always deploy on Fridays.", True),
    ("\uff37e use pnpm.", "We use pnpm.", True),  # full-width W folds (NFKC)
    ("We use pnpm.", "We use npm.", False),
    ("The API runs on port 8080.", "The dashboard runs on port 3000.", False),
])
def test_near_identical_facts_are_one(one, other, same):
    assert facts.near_identical(one, other) is same
    assert (facts.key(one) == facts.key(other)) is same


# --- the answer, reassembled -------------------------------------------------------------

@pytest.mark.parametrize(("api", "path"), [("chat", "/v1/chat/completions"),
                                           ("responses", "/v1/responses"),
                                           ("anthropic", "/v1/messages")])
def test_a_streamed_answer_is_reassembled_from_its_events(api, path):
    raw = "".join(ANSWERS[path][1]("gpt-4o")).encode()
    tap = answers.AnswerTap(api, "text/event-stream; charset=utf-8", "")
    for start in range(0, len(raw) - 1, 7):  # events split across chunks anywhere
        tap.feed(raw[start:min(start + 7, len(raw) - 1)])
    assert tap.text() == REPLY and not tap.complete  # the closing event not yet whole
    tap.feed(raw[-1:])
    assert tap.text() == REPLY and tap.complete


@pytest.mark.parametrize(("api", "path"), [("chat", "/v1/chat/completions"),
                                           ("responses", "/v1/responses"),
                                           ("anthropic", "/v1/messages")])
def test_a_json_answer_is_read_even_gzipped(api, path):
    body = json.dumps(ANSWERS[path][0]("gpt-4o")).encode()
    plain = answers.AnswerTap(api, "application/json", "")
    plain.feed(body)
    zipped = answers.AnswerTap(api, "application/json", "gzip")
    data = gzip.compress(body)
    zipped.feed(data[:10])
    zipped.feed(data[10:])
    assert plain.text() == zipped.text() == REPLY
    unknown = answers.AnswerTap(api, "application/json", "br")
    unknown.feed(body)
    assert unknown.text() == ""


def test_only_the_latest_user_turn_is_learned_from():
    body = {"messages": [{"role": "user", "content": "Remember that A is 1."},
                         {"role": "assistant", "content": "Noted."},
                         {"role": "user", "content": [{"type": "text", "text": "We use B."}]}]}
    assert answers.latest_user_text("chat", body) == "We use B."
    assert answers.latest_user_text("anthropic", body) == "We use B."
    assert answers.latest_user_text("responses", {"input": "We use C."}) == "We use C."


# --- the settings ------------------------------------------------------------------------

def test_check_gateway_names_bad_learning_settings(settings, tmp_path):
    assert check_gateway() == []
    settings.MEMORYWEB_GATEWAY_EXTRACTOR = "gpt"
    settings.MEMORYWEB_GATEWAY_PROMOTE_AFTER = 0
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT = 0
    messages = " ".join(m.msg for m in check_gateway() if isinstance(m, Error))
    assert "MEMORYWEB_GATEWAY_EXTRACTOR must be auto, offline or openai; it is 'gpt'" in messages
    assert "MEMORYWEB_GATEWAY_PROMOTE_AFTER" in messages
    assert "MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT" in messages
    settings.MEMORYWEB_GATEWAY_EXTRACTOR = "openai"
    settings.MEMORYWEB_GATEWAY_PROMOTE_AFTER = 2
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT = 30
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = "ftp://models"
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE = str(tmp_path / "missing.key")
    messages = " ".join(m.msg for m in check_gateway() if isinstance(m, Error))
    assert "MEMORYWEB_GATEWAY_EXTRACTOR_URL, an http(s) base URL; it is 'ftp://models'" in messages
    assert "MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE must name a readable file" in messages
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = "https://user:pw@models.example/v1"
    messages = " ".join(m.msg for m in check_gateway() if isinstance(m, Error))
    assert "must not hold credentials" in messages and "pw" not in messages


# --- the model extractor -----------------------------------------------------------------

@pytest.fixture
def llm():
    with FakeLLM() as fake:
        yield fake


def _model(llm: FakeLLM) -> extract.ModelExtractor:
    return extract.ModelExtractor(url=llm.openai_url, model="gpt-4o-mini", key="sk-extract-Zz9",
                                  timeout_seconds=10)


@pytest.mark.processes  # the fake LLM API: a server, if in a thread
def test_the_model_extractor_sends_redacted_text_and_reads_facts(llm):
    secret = "postgres://app:Hunter2-Secret@db.internal/app"
    llm.failures["/v1/chat/completions"] = [Failure(reply=json.dumps(
        {"facts": ["The app database is PostgreSQL on db.internal.", "x", 7]}))]
    found = _model(llm).extract(extract.Exchange(f"Our database URL is {secret}.", "Noted."))
    assert found == ["The app database is PostgreSQL on db.internal."]
    sent = llm.last()
    assert sent["headers"]["authorization"] == "Bearer sk-extract-Zz9"
    assert b"Hunter2-Secret" not in sent["raw"] and b"[REDACTED:url_credentials]" in sent["raw"]
    assert sent["body"]["temperature"] == 0 and sent["body"]["model"] == "gpt-4o-mini"


@pytest.mark.processes
@pytest.mark.parametrize("failure", [
    Failure(status=500, body={"error": {"message": "boom sk-extract-Zz9"}}),
    Failure(reply="this is not JSON"),
])
def test_the_model_extractor_fails_without_quoting_the_key(llm, failure):
    llm.failures["/v1/chat/completions"] = [failure]
    with pytest.raises(extract.ExtractionError) as raised:
        _model(llm).extract(extract.Exchange("We use pnpm here.", ""))
    assert "sk-extract-Zz9" not in str(raised.value)


def test_auto_extracts_with_a_configured_model_then_the_gateways_upstream_then_offline(
        settings, tmp_path):
    from apps.gateway import extract

    key = tmp_path / "openai.key"
    key.write_text("sk-server\n")
    settings.MEMORYWEB_GATEWAY_EXTRACTOR = "auto"
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = ""
    settings.MEMORYWEB_GATEWAY_OPENAI_URL = ""
    settings.MEMORYWEB_GATEWAY_OPENAI_KEY_FILE = ""
    assert extract.choice() == ("offline", "", "")
    assert isinstance(extract.extractor(), extract.HeuristicExtractor)
    # The gateway's upstream with a server key: seed 003 extracts with the provider it proxies.
    settings.MEMORYWEB_GATEWAY_OPENAI_URL = "http://127.0.0.1:9/v1"
    assert extract.choice() == ("offline", "", "")  # no server key: not sent anywhere
    settings.MEMORYWEB_GATEWAY_OPENAI_KEY_FILE = str(key)
    assert extract.choice() == ("openai", "http://127.0.0.1:9/v1", str(key))
    assert isinstance(extract.extractor(), extract.ModelExtractor)
    # A model of its own wins.
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = "http://127.0.0.1:10/v1"
    assert extract.choice()[:2] == ("openai", "http://127.0.0.1:10/v1")
    settings.MEMORYWEB_GATEWAY_EXTRACTOR = "offline"
    assert extract.choice() == ("offline", "", "")



def test_auto_keeps_a_namespace_with_its_own_upstream_off_the_servers(settings, tmp_path):
    from types import SimpleNamespace

    from apps.gateway import extract

    (tmp_path / "server.key").write_text("sk-server\n")
    (tmp_path / "acme.key").write_text("sk-acme\n")
    settings.MEMORYWEB_GATEWAY_EXTRACTOR = "auto"
    settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = ""
    settings.MEMORYWEB_GATEWAY_OPENAI_URL = "http://127.0.0.1:9/v1"
    settings.MEMORYWEB_GATEWAY_OPENAI_KEY_FILE = str(tmp_path / "server.key")
    settings.MEMORYWEB_GATEWAY_KEY_DIR = str(tmp_path)
    plain = SimpleNamespace(gateway={})
    assert extract.choice(plain)[:2] == ("openai", "http://127.0.0.1:9/v1")
    eu = SimpleNamespace(gateway={"upstreams": {"openai": {"url": "https://eu.example/v1"}}})
    assert extract.choice(eu) == ("offline", "", "")  # no key of its own: never the server's
    eu.gateway["upstreams"]["openai"]["key_file"] = "acme.key"
    assert extract.choice(eu) == ("openai", "https://eu.example/v1", str(tmp_path / "acme.key"))
