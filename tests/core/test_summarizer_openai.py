"""The OpenAI-compatible summarizer against a fake upstream on loopback (a threading HTTP
server in this process that answers from a script and records every request:
tests/helpers/fake_upstream.py, its fixtures in tests/plugins/fake_upstream.py, shared
with the rollups built through the provider): canned answers mapped back to source ids,
429 with Retry-After, 5xx, timeouts, refused keys, malformed answers; the request carries
the model and the key and no secret of the sources; the key appears in no error and no
log line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from apps.core import conf
from apps.core.summarizer import SourceText, SummarizerError, get_summarizer
from apps.core.summarizer_openai import MAX_WAIT_SECONDS, OpenAISummarizer
from tests.helpers.fake_upstream import KEY, Reply, chat

#: A secret pasted into a conversation: it must never reach the upstream.
PLANTED = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

SOURCES = [
    SourceText("ev-1", "Alice moved the nightly backup to 02:00 UTC. It used to run at midnight.",
               T0, "user"),
    SourceText("ev-2", f"Deploy with token {PLANTED} failed twice on the staging cluster.",
               T0 + timedelta(minutes=3), "tool_result"),
    SourceText("ev-3", "Bob fixed the staging deploy by rotating the token; the cluster is green.",
               T0 + timedelta(minutes=9), "assistant"),
]


GOOD = chat({"parts": [
    {"text": "Alice moved the nightly backup to 02:00 UTC.", "sources": [1],
     "quotes": ["Alice moved the nightly backup to 02:00 UTC."]},
    {"text": "A staging deploy failed until Bob rotated the token.", "sources": [2, 3, 9, 2],
     "quotes": ["failed twice on the staging cluster", "the token was rotated by Bob", "x", "y"]},
    {"text": "An invented part.", "sources": [7], "quotes": ["nothing"]},
]})


@pytest.fixture
def upstream(upstream):
    """The shared fake upstream (tests/plugins/fake_upstream.py), answering GOOD."""
    upstream.script = [Reply(body=GOOD)]
    return upstream


def _provider(**changes) -> tuple[OpenAISummarizer, list[float]]:
    """The provider from the current settings, its waits recorded instead of slept."""
    waits: list[float] = []
    config = conf.summarizer()
    options = dict(url=config.url, model=config.model, key=config.key,
                   timeout_seconds=config.timeout_seconds, retries=config.retries,
                   backoff_seconds=config.backoff_seconds, max_input_chars=config.max_input_chars)
    return OpenAISummarizer(**{**options, **changes}, sleep=waits.append), waits


def _assert_no_key(error: BaseException) -> None:
    for text in (str(error), repr(error), *map(str, error.args)):
        assert KEY not in text and KEY[:12] not in text


# --- A good answer ---------------------------------------------------------------------------


def test_a_good_answer_becomes_parts_with_grips(provider_settings, upstream):
    summary = get_summarizer().summarize(SOURCES, max_chars=500)
    assert summary.summarizer == "openai:tiny-1"
    first, second = summary.parts  # the part naming only an unknown source is dropped
    assert first.source_ids == ("ev-1",)
    assert first.excerpts == ("Alice moved the nightly backup to 02:00 UTC.",)
    # Source 9 does not exist and 2 is named twice: once. A quote not in its source: its
    # best sentence.
    assert second.source_ids == ("ev-2", "ev-3")
    assert second.excerpts[0] == "failed twice on the staging cluster"
    assert second.excerpts[1] == \
        "Bob fixed the staging deploy by rotating the token; the cluster is green."
    assert summary.text == ("Alice moved the nightly backup to 02:00 UTC.\n"
                            "A staging deploy failed until Bob rotated the token.")

    (request,) = upstream.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "tiny-1"
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and '"parts"' in system["content"]
    assert "500 characters" in system["content"]
    lines = user["content"].splitlines()
    assert lines[0].startswith("[1] 2026-03-03T09:00Z user: Alice moved")
    assert lines[1].startswith("[2] 2026-03-03T09:03Z tool_result: Deploy with token [REDACTED")
    assert lines[2].startswith("[3] 2026-03-03T09:09Z assistant: Bob fixed")


def test_no_secret_leaves_the_machine(provider_settings, upstream):
    """The planted token is redacted from texts, labels and the focus before the request."""
    sources = [*SOURCES, SourceText("ev-4", "ok", T0, label=f"bot {PLANTED}")]
    get_summarizer().summarize(sources, max_chars=500, focus=f"deploys and {PLANTED}")
    (request,) = upstream.requests
    assert PLANTED not in request["raw"]
    assert PLANTED[:12] not in request["raw"]
    assert "[REDACTED:github]" in request["body"]["messages"][1]["content"]
    assert "Focus on: deploys and [REDACTED:github]" in request["body"]["messages"][1]["content"]


def test_the_answer_is_bounded_by_max_chars(provider_settings, upstream):
    long_part = {"text": "Word " * 80, "sources": [1], "quotes": []}
    short_part = {"text": "Bob fixed the deploy.", "sources": ["3"], "quotes": ["Bob fixed"]}
    upstream.script = [Reply(body=chat({"parts": [long_part, short_part]}))]
    summary = get_summarizer().summarize(SOURCES, max_chars=100)
    assert len(summary.text) <= 100
    assert summary.text == "Bob fixed the deploy."  # the one that fits
    assert summary.parts[0].excerpts == ("Bob fixed",)
    upstream.script = [Reply(body=chat({"parts": [long_part]}))]
    summary = get_summarizer().summarize(SOURCES, max_chars=50)
    assert len(summary.text) <= 50 and summary.text.endswith("…")
    assert summary.parts[0].excerpts[0] in SOURCES[0].text  # a sentence of source 1


def test_a_fenced_answer_and_loose_quotes_are_understood(provider_settings, upstream):
    content = "```json\n" + json.dumps({"parts": [
        {"text": "The backup runs at 02:00.", "sources": [1],
         "quotes": ["alice  MOVED the nightly\nbackup"]}]}) + "\n```"
    upstream.script = [Reply(body=chat(content))]
    summary = get_summarizer().summarize(SOURCES, max_chars=200)
    assert summary.parts[0].excerpts == ("Alice moved the nightly backup",)


def test_no_sources_no_request(provider_settings, upstream):
    summary = get_summarizer().summarize([SourceText("x", "  ")], max_chars=100)
    assert summary.parts == () and summary.summarizer == "openai:tiny-1"
    assert upstream.requests == []


def test_too_much_input_is_preselected_extractively(provider_settings, upstream):
    """Above MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS the extractive summarizer picks what is
    sent; the numbers in the answer still map to the right ids."""
    provider_settings.MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS = 1000
    sources = [SourceText(f"m{i}", f"Routine heartbeat number {i} from worker {i % 7} was fine.",
                          T0 + timedelta(seconds=i)) for i in range(300)]
    sources.append(SourceText("rare", "Zed discovered that the invoice export drops "
                              "Norwegian characters.", T0 + timedelta(hours=1)))
    upstream.script = [Reply(body=chat({"parts": [{"text": "x", "sources": [1], "quotes": []}]}))]
    get_summarizer().summarize(sources, max_chars=300)
    user = upstream.requests[0]["body"]["messages"][1]["content"]
    sent = user.splitlines()
    assert sum(len(line.split(": ", 1)[1]) for line in sent) <= 1000
    assert 1 < len(sent) < 300
    assert any("Norwegian characters" in line for line in sent)
    # The answer's [n] is the n-th source as sent.
    n = next(i for i, line in enumerate(sent, 1) if "Norwegian" in line)
    upstream.script = [Reply(body=chat({"parts": [
        {"text": "Export bug.", "sources": [n], "quotes": ["invoice export drops"]}]}))]
    summary = get_summarizer().summarize(sources, max_chars=300)
    assert summary.parts[0].source_ids == ("rare",)


# --- Failures and retries -----------------------------------------------------------------


def test_429_waits_as_told_then_succeeds(provider_settings, upstream):
    upstream.script = [Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"}),
                       Reply(body=GOOD)]
    provider, waits = _provider()
    summary = provider.summarize(SOURCES, max_chars=500)
    assert len(summary.parts) == 2
    assert waits == [7.0]
    assert len(upstream.requests) == 2


def test_a_retry_after_too_long_to_wait_ends_the_run_retryably(provider_settings, upstream):
    late = MAX_WAIT_SECONDS + 180
    upstream.script = [Reply(429, {"error": "quota"}, {"Retry-After": str(int(late))})]
    provider, waits = _provider()
    with pytest.raises(SummarizerError) as raised:
        provider.summarize(SOURCES, max_chars=500)
    assert raised.value.retryable and raised.value.retry_after == late
    assert waits == [] and len(upstream.requests) == 1


def test_5xx_is_retried_with_growing_backoff(provider_settings, upstream, caplog):
    upstream.script = [Reply(500, {"error": "boom"}), Reply(502, "bad gateway"),
                       Reply(503, {"error": "busy"}), Reply(body=GOOD)]
    provider, waits = _provider(backoff_seconds=1.0)
    with caplog.at_level(logging.WARNING, logger="apps.core.summarizer_openai"):
        summary = provider.summarize(SOURCES, max_chars=500)
    assert len(summary.parts) == 2 and len(upstream.requests) == 4
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):  # backoff * 2^n, jittered into its upper half
        assert 2 ** attempt / 2 <= wait <= 2 ** attempt
    assert "503" in caplog.text and KEY not in caplog.text


def test_a_timeout_is_retried(provider_settings, upstream):
    provider_settings.MEMORYWEB_SUMMARIZER_TIMEOUT = 0.3
    upstream.script = [Reply(body=GOOD, delay=3.0), Reply(body=GOOD)]
    summary = get_summarizer().summarize(SOURCES, max_chars=500)  # real (short) backoff
    assert len(summary.parts) == 2 and len(upstream.requests) == 2


def test_a_permanent_timeout_is_a_retryable_error(provider_settings, upstream):
    provider_settings.MEMORYWEB_SUMMARIZER_TIMEOUT = 0.2
    provider_settings.MEMORYWEB_SUMMARIZER_RETRIES = 1
    upstream.script = [Reply(body=GOOD, delay=3.0)]
    with pytest.raises(SummarizerError, match=r"no answer within 0\.2 s") as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is True and len(upstream.requests) == 2


def test_a_permanent_5xx_is_a_retryable_error(provider_settings, upstream):
    provider_settings.MEMORYWEB_SUMMARIZER_RETRIES = 2
    upstream.script = [Reply(500, {"error": f"internal, key {KEY}"})]
    with pytest.raises(SummarizerError) as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is True
    assert "500" in str(raised.value) and "3 attempts" in str(raised.value)
    assert len(upstream.requests) == 3
    _assert_no_key(raised.value)


def test_a_refused_key_is_not_retried_and_not_repeated(provider_settings, upstream):
    upstream.script = [Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}. "
                                             f"You can find your key at ...",
                                             "code": "invalid_api_key"}})]
    with pytest.raises(SummarizerError) as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is False
    assert "401" in str(raised.value) and "invalid_api_key" in str(raised.value)
    assert len(upstream.requests) == 1
    _assert_no_key(raised.value)


@pytest.mark.parametrize("content", [
    "not json at all",
    json.dumps({"summary": "no parts list"}),
    json.dumps({"parts": [{"text": "no sources"}, {"text": "", "sources": [1]},
                          {"text": "unknown", "sources": [0, 4, "x", True]}]}),
], ids=["not-json", "no-parts", "no-usable-part"])
def test_a_malformed_answer_is_not_retryable(provider_settings, upstream, content):
    upstream.script = [Reply(body=chat(content))]
    with pytest.raises(SummarizerError) as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is False
    assert len(upstream.requests) == 1
    # The answer may paraphrase memories: the error (kept in job results and rollup
    # states, which erasure does not reach) names its size, never its text.
    assert content not in str(raised.value) and "not kept" in str(raised.value)


def test_a_200_that_is_no_chat_completion_is_not_retryable(provider_settings, upstream):
    upstream.script = [Reply(body="<html>captive portal</html>")]
    with pytest.raises(SummarizerError, match="without a chat completion") as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is False


def test_an_unreachable_upstream_is_a_retryable_error(provider_settings, upstream):
    provider_settings.MEMORYWEB_SUMMARIZER_RETRIES = 1
    upstream.__exit__()  # nothing listens on the port any more
    with pytest.raises(SummarizerError, match="connection failed") as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is True
    _assert_no_key(raised.value)


def test_no_redaction_nothing_sent(provider_settings, upstream, monkeypatch):
    """Fail closed: without the redaction module the provider sends nothing."""
    import builtins

    real_import = builtins.__import__

    def without_capture(name, *args, **kwargs):
        if name.startswith("memoryweb_capture"):
            raise ImportError("No module named 'memoryweb_capture'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_capture)
    with pytest.raises(SummarizerError, match="redaction") as raised:
        get_summarizer().summarize(SOURCES, max_chars=500)
    assert raised.value.retryable is False
    assert upstream.requests == []


@pytest.mark.parametrize("number, index", [
    (3, 2), ("3", 2), (" [2] ", 1), (2.0, 1), (True, None), (0, None), (6, None),
    ("²", None),  # a digit to str.isdigit(), not a number to int(): it raised ValueError
    ("x", None), (None, None),
    ("12", None), ("1" * 5000, None),  # longer than any source number (5000 digits: int() raised)
])
def test_a_source_number_is_read_as_sent_or_ignored(number, index):
    from apps.core.summarizer_openai import _source_number

    assert _source_number(number, 5) == index
