"""The summarizer interface and the offline extractive summarizer (apps/core/summarizer*.py,
docs/summarizer.md): deterministic, bounded, covering each topic of the input, keeping
names, numbers and dates, every excerpt a substring of its source, chronological."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from apps.core.summarizer import (
    MAX_EXCERPT_CHARS,
    SourceText,
    Summarizer,
    Summary,
    SummaryPart,
    get_summarizer,
)
from apps.core.summarizer_extractive import ExtractiveSummarizer, best_sentence, split_units
from apps.core.summarizer_openai import OpenAISummarizer
from tests.servers import ROOT

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

#: A day with two topics: a database migration (many events) and a release party (few).
DAY = [
    "We started the database migration from SQLite to Postgres this morning.",
    "The migration script converted the orders table; the customers table is next.",
    "Postgres rejected two rows of the orders table because of a constraint on dates.",
    "Fixed the constraint and reran the migration of the orders table successfully.",
    "The database migration of the customers table finished without errors.",
    "Migration done: both tables now live in Postgres, SQLite stays read-only for a week.",
    "Carol is organising the release party for version 2.4 on Friday at the Blue Lagoon.",
    "The release party needs a cake; Dave will order it from the bakery.",
]


def _sources(texts, start=T0, step=timedelta(minutes=5)):
    return [SourceText(f"e{i}", text, start + i * step) for i, text in enumerate(texts)]


def _assert_well_formed(summary: Summary, sources, max_chars):
    texts = {source.id: source.text for source in sources}
    assert len(summary.text) <= max_chars
    for part in summary.parts:
        assert part.text and len(part.source_ids) >= 1
        assert len(part.source_ids) == len(part.excerpts) == len(set(part.source_ids))
        for source_id, excerpt in zip(part.source_ids, part.excerpts, strict=True):
            assert source_id in texts
            assert excerpt and excerpt in texts[source_id]
            assert len(excerpt) <= MAX_EXCERPT_CHARS


# --- The interface -------------------------------------------------------------------------


def test_summary_text_joins_the_parts_and_lists_the_sources():
    summary = Summary((SummaryPart("A.", ("x", "y"), ("a", "b")), SummaryPart("B.", ("y",), ("c",))),
                      "extractive")
    assert summary.text == "A.\nB."
    assert summary.source_ids == ("x", "y")
    assert Summary(parts=()).text == ""


def test_get_summarizer_follows_the_setting_at_call_time():
    default = get_summarizer()
    assert isinstance(default, ExtractiveSummarizer) and isinstance(default, Summarizer)
    assert default.name == "extractive"
    with override_settings(MEMORYWEB_SUMMARIZER="openai", MEMORYWEB_SUMMARIZER_URL="https://llm.test/v1",
                           MEMORYWEB_SUMMARIZER_MODEL="tiny-1", MEMORYWEB_SUMMARIZER_KEY="sk-k"):
        provider = get_summarizer()
        assert isinstance(provider, OpenAISummarizer) and provider.name == "openai:tiny-1"
        assert provider.endpoint == "https://llm.test/v1/chat/completions"
        assert "sk-k" not in repr(provider)
    assert isinstance(get_summarizer(), ExtractiveSummarizer)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_a_bound_no_summary_can_keep_is_refused(bad):
    with pytest.raises(ValueError, match="max_chars"):
        ExtractiveSummarizer().summarize(_sources(DAY), max_chars=bad)


# --- Extractive ----------------------------------------------------------------------------


def test_no_sources_no_parts():
    summarizer = ExtractiveSummarizer()
    assert summarizer.summarize([], max_chars=500) == Summary(parts=(), summarizer="extractive")
    blank = [SourceText("a", ""), SourceText("b", "  \n\t "), SourceText("c", "...")]
    assert summarizer.summarize(blank, max_chars=500).parts == ()


def test_both_topics_are_covered():
    """Six events on the migration, two on the party: the party still gets a sentence."""
    sources = _sources(DAY)
    summary = ExtractiveSummarizer().summarize(sources, max_chars=300)
    _assert_well_formed(summary, sources, 300)
    assert 2 <= len(summary.parts) <= 4
    text = summary.text.lower()
    assert "migration" in text or "postgres" in text
    assert "party" in text or "cake" in text


def test_near_duplicates_are_said_once():
    repeated = "The nightly backup of the production database completed in 42 minutes."
    sources = _sources([repeated] * 30 + [repeated.replace("42", "43")] * 5
                       + ["Eve reported that the staging cluster ran out of disk space."])
    summary = ExtractiveSummarizer().summarize(sources, max_chars=400)
    _assert_well_formed(summary, sources, 400)
    backups = [part for part in summary.parts if "backup" in part.text]
    assert len(backups) == 1
    assert any("staging cluster" in part.text for part in summary.parts)


def test_names_numbers_and_dates_are_preferred():
    """Each topic said twice, alike but for one word of the same length: a plain word in the
    first, a name, a number or a date in the second. The room holds one sentence per
    topic: the specific one is picked, though the plain one comes first."""
    pairs = [("the deploy was rolled back by {} after the errors", "nobody", "Gracie"),
             ("latency of the search endpoint reached {} during the load test", "heaps", "87000"),
             ("the planning meeting about the roadmap was moved to {}", "autumn", "tuesday"),
             ("the planning meeting about the budget was moved to {}", "spring", "2026-03-14")]
    texts = [(template.format(word)[0].upper() + template.format(word)[1:] + ".")
             for template, plain, specific in pairs for word in (plain, specific)]
    sources = _sources(texts)
    room = sum(len(text) + 1 for text in texts[1::2])
    summary = ExtractiveSummarizer().summarize(sources, max_chars=room)
    _assert_well_formed(summary, sources, room)
    assert [part.text for part in summary.parts] == texts[1::2]


def test_a_covered_topic_gives_way_to_the_next():
    """Three topics (six, six and two sentences, each sentence with details of its own),
    room for three sentences: once a topic's words are covered, another topic's sentence
    adds the most, so each topic gets one."""
    tails = ["with batched inserts of ten thousand rows", "after the nightly backup finished",
             "using four parallel workers and a queue", "while the shop stayed read-only",
             "behind a feature flag for early customers", "with row checksums compared afterwards"]
    topics = {
        "migration": [f"The database migration moved the orders table to Postgres {tail}."
                      for tail in tails],
        "hiring": [f"Interviews for the backend engineer position continued {tail}."
                   for tail in ["with a take-home exercise", "in the afternoon panel",
                                "over video for remote candidates", "led by the platform lead",
                                "after the recruiter screened twelve people",
                                "using the new scoring rubric"]],
        "offsite": ["Mallory booked the venue for the summer offsite in the mountains.",
                    "The summer offsite venue has rooms for forty people and a lake."],
    }
    texts = [text for sentences in zip(*[topics["migration"], topics["hiring"]], strict=True)
             for text in sentences] + topics["offsite"]
    sources = _sources(texts)
    room = sum(max(len(text) for text in sentences) + 1 for sentences in topics.values())
    summary = ExtractiveSummarizer().summarize(sources, max_chars=room)
    _assert_well_formed(summary, sources, room)
    found = sorted(name for name, sentences in topics.items()
                   for part in summary.parts if part.text in sentences)
    assert found == ["hiring", "migration", "offsite"]


def test_the_focus_steers_the_pick():
    sources = _sources(DAY)
    room = max(len(text) for text in DAY)
    unfocused = ExtractiveSummarizer().summarize(sources, max_chars=room)
    focused = ExtractiveSummarizer().summarize(sources, max_chars=room, focus="cake bakery")
    assert "cake" not in unfocused.text
    assert len(focused.parts) == 1 and "cake" in focused.text


def test_parts_come_in_chronological_order():
    """Given out of order, with times: the picked sentences are told in time order."""
    events = [(T0 + timedelta(hours=h), text) for h, text in enumerate([
        "Frank opened the incident about failing payments at noon.",
        "The payment provider confirmed an outage of their token service.",
        "Traffic was switched to the backup payment provider.",
        "Henri wrote the postmortem; the incident is closed.",
    ])]
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    sources = [SourceText(f"e{when.hour}", text, when) for when, text in shuffled]
    summary = ExtractiveSummarizer().summarize(sources, max_chars=1000)
    assert len(summary.parts) == 4
    order = [next(when for when, text in events if text == part.text) for part in summary.parts]
    assert order == sorted(order)
    # Without times: the input's order.
    untimed = [SourceText(f"u{i}", text) for i, (_, text) in enumerate(shuffled)]
    summary = ExtractiveSummarizer().summarize(untimed, max_chars=1000)
    assert [part.source_ids[0] for part in summary.parts] == [s.id for s in untimed]


def test_the_bound_holds_at_every_size():
    sources = _sources(DAY * 3)
    for max_chars in (1, 10, 40, 75, 120, 333, 1000, 5000):
        summary = ExtractiveSummarizer().summarize(sources, max_chars=max_chars)
        _assert_well_formed(summary, sources, max_chars)
        assert summary.parts, max_chars  # never empty for a non-empty input
    tiny = ExtractiveSummarizer().summarize(sources, max_chars=10)
    assert len(tiny.parts) == 1 and tiny.text.endswith("…")
    (cut,) = tiny.parts
    assert len(cut.excerpts[0]) > 10  # the excerpt stays the whole sentence
    assert cut.excerpts[0].startswith(cut.text[:-1])


def test_long_unpunctuated_text_is_cut_into_excerpt_sized_units():
    log_line = " ".join(f"step{i} compiled module{i} in {i}ms" for i in range(200))
    sources = [SourceText("tool-1", log_line, T0, "tool_result")]
    summary = ExtractiveSummarizer().summarize(sources, max_chars=2000)
    _assert_well_formed(summary, sources, 2000)
    assert all(len(part.text) <= MAX_EXCERPT_CHARS for part in summary.parts)
    spans = split_units(log_line)
    assert all(end - start <= MAX_EXCERPT_CHARS for start, end in spans)
    assert " ".join(log_line[s:e] for s, e in spans) == log_line  # nothing lost but spaces


def test_sentences_split_where_people_end_them():
    text = ("Dr. Smith met Mr. Jones on Jan. 5, e.g. at the office. It went well!  Next: "
            "the budget?\nNew line without a stop\r\n你好世界。再见！ Ça marche.")  # noqa: RUF001
    assert [text[s:e] for s, e in split_units(text)] == [
        "Dr. Smith met Mr. Jones on Jan. 5, e.g. at the office.", "It went well!",
        "Next: the budget?", "New line without a stop", "你好世界。", "再见！",  # noqa: RUF001
        "Ça marche."]


def test_unicode_text_is_summarised_and_quoted_exactly():
    texts = ["Zoë a réservé la salle « Étoile » pour le 12 mars à 14 h 30.",
             "会议改到星期五。预算已经批准了！",  # noqa: RUF001
             "Die Übergabe an Jürgen ist für Montag geplant 🚀.",
             "Zoë a réservé la salle « Étoile » pour le 12 mars à 14 h 30."]
    sources = _sources(texts)
    summary = ExtractiveSummarizer().summarize(sources, max_chars=500)
    _assert_well_formed(summary, sources, 500)
    joined = summary.text
    assert "Zoë" in joined and "Jürgen" in joined and ("会议" in joined or "预算" in joined)
    assert joined.count("Zoë") == 1


def test_the_same_input_gives_the_same_summary():
    rng = random.Random(11)
    words = ["alpha", "beta", "gamma", "delta", "Kappa", "omega", "sigma", "tau", "rho", "phi"]
    texts = [" ".join(rng.choice(words) for _ in range(12)) + f" {i}." for i in range(400)]
    sources = _sources(texts)
    first = ExtractiveSummarizer().summarize(sources, max_chars=800)
    assert first.parts
    for _ in range(3):
        assert ExtractiveSummarizer().summarize(list(sources), max_chars=800) == first


_DETERMINISM_SCRIPT = """
import json, random
from apps.core.summarizer import SourceText
from apps.core.summarizer_extractive import ExtractiveSummarizer
rng = random.Random(5)
words = "alpha beta gamma delta Kappa omega sigma tau rho phi chi psi".split()
sources = [SourceText(f"e{i}", " ".join(rng.choice(words) for _ in range(10)) + ".")
           for i in range(300)]
summary = ExtractiveSummarizer().summarize(sources, max_chars=600)
print(json.dumps([[p.text, list(p.source_ids)] for p in summary.parts]))
"""


@pytest.mark.processes
def test_the_summary_does_not_depend_on_the_hash_seed():
    """Set and dict iteration over strings changes with PYTHONHASHSEED: the pick must not."""
    answers = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "DJANGO_SETTINGS_MODULE": "memoryweb.test_settings"}
        done = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout))
    assert answers[0] and answers[0] == answers[1]


def test_best_sentence_finds_the_matching_one():
    text = "The build passed. Ivy merged the pull request about caching. Lunch was late."
    assert best_sentence(text, "who merged the caching PR") == \
        "Ivy merged the pull request about caching."
    assert best_sentence(text, "nothing in common") == "The build passed."


@pytest.mark.processes
@pytest.mark.parametrize("text", ["." * 262144, "!" * 131072, ".!?" * 87382, "\u3002" * 131072],
                         ids=["dots", "bangs", "mixed", "cjk"])
def test_sentence_splitting_stays_linear_on_runs_of_end_marks(text):
    """32 KB of "." took 31 s before the look-behinds (quadratic), so 256 KB would take
    half an hour; every source an agent stores may reach a summary. A hang detector,
    thousands of times the expected run, not a speed target."""
    from pathlib import Path

    code = ("import sys; from apps.core.summarizer_extractive import best_sentence; "
            "sys.stdout.write(str(len(best_sentence(sys.stdin.read(), 'a query'))))")
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                          text=True, timeout=120, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.isdigit()


def test_the_offline_summarizer_needs_no_network(monkeypatch):
    """The default summarizer opens no connection and resolves no name: with sockets and
    name lookups refusing, it summarises the day as it does with them."""
    import socket

    with_network = ExtractiveSummarizer().summarize(_sources(DAY), max_chars=400)

    def refuse(*args, **kwargs):
        raise AssertionError("the offline summarizer used the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    offline = ExtractiveSummarizer().summarize(_sources(DAY), max_chars=400)
    assert offline == with_network and offline.parts
    _assert_well_formed(offline, _sources(DAY), 400)
