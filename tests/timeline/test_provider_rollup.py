"""Rollups built through the OpenAI-compatible summarizer provider (``MEMORYWEB_SUMMARIZER=
openai``) against the fake upstream on loopback (tests/helpers/fake_upstream.py): when the
upstream fails — 500s, 429s after some answers, replies slower than the timeout — the
build writes nothing for the nodes it could not summarise, leaves what it had built
before exactly as it was, builds no ancestor over the gap, and the next build resumes
where it stopped, asking the upstream only about the nodes still missing
(docs/timeline.md, "Building: checkpoints and failures"; docs/summarizer.md, "What a job
does with a failure").

The conversation (UTC; ISO week 2024-W14, April 2024):

- Tue 2024-04-02: session cc-1 at 08:00 (3 events) and cc-2 at 15:00 (2 events): 2 segments;
- Wed 2024-04-03: session cc-3 at 10:00 (3 events): 1 segment;
- Fri 2024-04-05: session cc-4 at 17:00 (2 events): 1 segment.

A first build summarises, in this order: Tuesday's 2 segments and its day; Wednesday's
segment and day; Friday's segment and day; the week, the month, the year (10 nodes, one
request each when the upstream answers).
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEntry
from apps.core.kinds import MemoryKind
from apps.memories.models import Memory
from apps.timeline import periods
from apps.timeline.build import build
from apps.timeline.models import Grip, Level, NodeStatus, RollupNode, RollupSource
from tests.helpers.fake_upstream import KEY, MODEL, Reply, quoting, sent_sources

CONVERSATION = {
    "2024-04-02": [
        ("cc-1", "user_message", "08:00:00", "Why does the nightly export time out?"),
        ("cc-1", "tool_result", "08:01:00", "export.log: the audit query took 312 seconds."),
        ("cc-1", "assistant_message", "08:02:00", "The audit query lacks an index on created_at."),
        ("cc-2", "user_message", "15:00:00", "Rename the billing service to ledger."),
        ("cc-2", "assistant_message", "15:04:00", "Renamed billing to ledger in 14 files."),
    ],
    "2024-04-03": [
        ("cc-3", "user_message", "10:00:00", "Ship the index migration to staging first."),
        ("cc-3", "tool_result", "10:03:00", "migrate: applied 0042_audit_created_at_index."),
        ("cc-3", "assistant_message", "10:05:00", "Staging has the index; the export took 9 seconds."),
    ],
    "2024-04-05": [
        ("cc-4", "user_message", "17:00:00", "Priya asks for the Berlin offsite agenda by Monday."),
        ("cc-4", "assistant_message", "17:02:00", "Drafted the Berlin offsite agenda for Priya."),
    ],
}
TUESDAY, WEDNESDAY, FRIDAY = CONVERSATION
COUNTS = {"segment": 4, "day": 3, "week": 1, "month": 1, "year": 1}
ROLES = {"user", "assistant", "tool"}
#: A node, as a test compares it before and after a build: everything a build writes.
Snapshot = dict[tuple[str, str, str], tuple[Any, ...]]


def _post_events(caller, day: str, rows, prefix: str = "e") -> None:
    body = {"events": [{"id": f"{prefix}-{day}-{n}", "event_type": kind, "session_id": session,
                        "occurred_at": f"{day}T{time}Z", "text": text}
                       for n, (session, kind, time, text) in enumerate(rows)]}
    response = caller.post("/api/v1/events", body)
    assert response.status_code == 201, response.content


@pytest.fixture
def conversation(agent) -> None:
    for day, rows in CONVERSATION.items():
        _post_events(agent, day, rows)


@pytest.fixture
def provider(provider_settings, upstream):
    """The provider against the fake upstream: one retry, short waits."""
    provider_settings.MEMORYWEB_SUMMARIZER_RETRIES = 1
    provider_settings.MEMORYWEB_SUMMARIZER_BACKOFF = 0.01
    return upstream


def _key(node: RollupNode) -> tuple[str, str, str]:
    return (node.level, node.start.date().isoformat(), node.session_id)


def _snapshot(namespace) -> Snapshot:
    """Every node with its summary, memory (and that memory's text), grips and sources."""
    found: Snapshot = {}
    for node in RollupNode.objects.filter(namespace=namespace).select_related("memory"):
        found[_key(node)] = (
            node.pk, node.revision, node.status, node.summary, tuple(node.parts),
            node.input_digest, node.memory_id, node.memory.content if node.memory else None,
            tuple(Grip.objects.filter(node=node).order_by("position")
                  .values_list("part", "memory_id", "excerpt")),
            tuple(sorted(str(i) for i in RollupSource.objects.filter(node=node)
                         .values_list("memory_id", flat=True))))
    return found


def assert_nothing_half_built(namespace) -> None:
    """What docs/timeline.md promises of every node a build leaves, whatever failed: a node
    is whole — its summary, its summary memory (the node's title, source count and
    summary, pointing back at the node), its grips (every part has at least one, each
    quoting a real source event), its sources (a segment) and its children (above) — or it
    is not there. No summary memory without its node; nothing pending."""
    nodes = list(RollupNode.objects.filter(namespace=namespace).select_related("memory"))
    summaries = set(Memory.objects.filter(namespace=namespace, kind=MemoryKind.SUMMARY)
                    .values_list("pk", flat=True))
    assert summaries == {node.memory_id for node in nodes}, "a summary memory without its node"
    for node in nodes:
        where = _key(node)
        assert node.status == NodeStatus.OK, where
        assert node.summarizer == f"openai:{MODEL}", where
        assert node.summary and node.summary == "\n".join(node.parts), where
        assert node.memory is not None, where
        title = periods.title(node.level, node.start, node.end, node.session_id)
        assert node.memory.content == f"{title}, {node.source_count} sources:\n{node.summary}"
        assert node.memory.metadata["timeline_node"] == str(node.pk)
        grips = list(Grip.objects.filter(node=node))
        assert {grip.part for grip in grips} == set(range(len(node.parts))), where
        for grip in grips:
            source = Memory.objects.get(pk=grip.memory_id)
            assert source.kind != MemoryKind.SUMMARY and grip.excerpt in source.content, where
        if node.level == Level.SEGMENT:
            listed = RollupSource.objects.filter(node=node).count()
            assert listed == node.source_count > 0, where
        else:
            children = [n for n in nodes if n.parent_id == node.pk]
            if node.level == Level.MONTH:  # a month is summarised from its days
                children = [n for n in nodes if n.level == Level.DAY
                            and periods.start_of(Level.MONTH, n.start.date()) == node.start]
            assert children and sum(c.source_count for c in children) == node.source_count, where
    built = AuditEntry.objects.filter(namespace=namespace, operation="timeline.build").count()
    assert built == sum(node.revision for node in nodes)  # one entry per node written


def _check_requests(requests: list[dict]) -> None:
    for request in requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == f"Bearer {KEY}"
        assert request["body"]["model"] == MODEL


def _event_texts(requests: list[dict]) -> set[str]:
    """The conversation events the upstream was asked to summarise (segment requests: their
    sources are labelled with a role; higher levels' sources are child summaries)."""
    return {text for request in requests for _, head, text in sent_sources(request["body"])
            if head.rsplit(" ", 1)[-1] in ROLES}


def _texts(*days: str) -> set[str]:
    return {text for day in days for *_, text in CONVERSATION[day]}


def _built(report) -> int:
    return sum(report.built.values())


# --- (a) The upstream answers 500 to everything -------------------------------------------


def test_a_first_build_against_a_failing_upstream_writes_nothing_and_the_next_completes(
        alpha, conversation, provider):
    provider.script = [Reply(500, {"error": {"message": "internal error"}})]

    report = build(alpha)

    # Every segment was tried (one retry each), failed retryably, and nothing above them ran:
    # the days wait (the week, month and year have no child to wait for yet).
    assert not report.ok and report.built == {}
    assert [f["level"] for f in report.failed] == ["segment"] * COUNTS["segment"]
    assert all(f["retryable"] and "500" in f["error"] for f in report.failed)
    assert report.waiting == COUNTS["day"]
    assert len(provider.requests) == COUNTS["segment"] * 2
    _check_requests(provider.requests)
    # Nothing was written for them: no node, summary memory, grip, source or audit entry.
    assert not RollupNode.objects.exists() and not Grip.objects.exists()
    assert not RollupSource.objects.exists()
    assert not Memory.objects.filter(kind=MemoryKind.SUMMARY).exists()
    assert not AuditEntry.objects.filter(operation="timeline.build").exists()

    provider.script, provider.requests[:] = [Reply(body=quoting())], []
    resumed = build(alpha)

    assert resumed.ok and resumed.built == COUNTS
    assert len(provider.requests) == sum(COUNTS.values())  # one request per node
    assert_nothing_half_built(alpha)
    assert _event_texts(provider.requests) == _texts(*CONVERSATION)


def test_a_failing_upstream_leaves_a_built_tree_exactly_as_it_was(
        alpha, agent, conversation, provider):
    assert build(alpha).built == COUNTS
    before = _snapshot(alpha)
    # Wednesday and Friday change: an event each, in their sessions.
    _post_events(agent, WEDNESDAY, [("cc-3", "user_message", "10:07:00",
                                     "Then ship it to production on Thursday.")], "late")
    _post_events(agent, FRIDAY, [("cc-4", "user_message", "17:05:00",
                                  "Add a dinner on the second evening.")], "late")
    provider.script, provider.requests[:] = [Reply(503, "upstream unavailable")], []

    report = build(alpha)

    assert report.built == {} and report.unchanged == 1  # Tuesday
    assert [(f["level"], f["start"][:10]) for f in report.failed] == [
        ("segment", WEDNESDAY), ("segment", FRIDAY)]
    assert report.waiting == 2 + 3  # the two days; the week, month and year above them
    assert len(provider.requests) == 2 * 2
    assert _event_texts(provider.requests) == _texts(WEDNESDAY, FRIDAY) | {
        "Then ship it to production on Thursday.", "Add a dinner on the second evening."}
    assert _snapshot(alpha) == before  # every node, memory, grip and source as it was
    assert_nothing_half_built(alpha)

    provider.script, provider.requests[:] = [Reply(body=quoting())], []
    resumed = build(alpha)

    assert resumed.ok and resumed.built == {"segment": 2, "day": 2, "week": 1, "month": 1,
                                            "year": 1}
    assert len(provider.requests) == 7
    assert_nothing_half_built(alpha)
    after = _snapshot(alpha)
    tuesday = {key for key in before if key[1] == TUESDAY}
    assert {key: after[key] for key in tuesday} == {key: before[key] for key in tuesday}
    assert all(after[key][1] == before[key][1] + 1 for key in set(before) - tuesday)
    assert "production on Thursday" in after[("segment", WEDNESDAY, "cc-3")][3]


# --- (b) 429 after some answers; (c) the upstream recovers ---------------------------------


def test_429_after_some_answers_keeps_what_was_built_and_the_rest_waits_then_resumes(
        alpha, conversation, provider):
    # Four answers (Tuesday's 2 segments and day, Wednesday's segment), then 429s.
    provider.script = [Reply(body=quoting())] * 4 + [
        Reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})]

    report = build(alpha)

    assert report.built == {"segment": 3, "day": 1}
    assert [(f["level"], f["start"][:10]) for f in report.failed] == [
        ("day", WEDNESDAY), ("segment", FRIDAY)]
    assert all(f["retryable"] and "429" in f["error"] for f in report.failed)
    # Friday's day, and the week and month over Tuesday's day (no month yet for a year).
    assert report.waiting == 1 + 2
    assert len(provider.requests) == 4 + 2 * 2
    _check_requests(provider.requests)
    # The nodes completed are whole; nothing else exists — no Wednesday day built over
    # nothing, no Friday, and no week, month or year over the gap.
    assert_nothing_half_built(alpha)
    built = _snapshot(alpha)
    assert set(built) == {("segment", TUESDAY, "cc-1"), ("segment", TUESDAY, "cc-2"),
                          ("day", TUESDAY, ""), ("segment", WEDNESDAY, "cc-3")}

    provider.script, provider.requests[:] = [Reply(body=quoting())], []
    resumed = build(alpha)

    # (c) The next build completes everything, asking only about what was missing: Friday's
    # events (Tuesday's and Wednesday's segments are built and were not sent again), then
    # Wednesday's and Friday's days, the week, the month and the year.
    assert resumed.ok and resumed.built == {"segment": 1, "day": 2, "week": 1, "month": 1,
                                            "year": 1}
    assert len(provider.requests) == 6
    assert _event_texts(provider.requests) == _texts(FRIDAY)
    assert_nothing_half_built(alpha)
    after = _snapshot(alpha)
    assert {key: after[key] for key in built} == built  # the completed ones untouched
    assert {level: sum(1 for key in after if key[0] == level) for level in COUNTS} == COUNTS
    year = RollupNode.objects.get(namespace=alpha, level=Level.YEAR)
    assert year.source_count == sum(len(rows) for rows in CONVERSATION.values())

    provider.requests[:] = []
    unchanged = build(alpha)

    # A further build: nothing to do, and the upstream is not called at all.
    assert unchanged.ok and unchanged.built == {} and provider.requests == []
    assert _snapshot(alpha) == after


# --- A reply slower than the timeout --------------------------------------------------------


def test_an_upstream_slower_than_the_timeout_writes_nothing_and_the_next_build_completes(
        alpha, conversation, provider, settings):
    settings.MEMORYWEB_SUMMARIZER_TIMEOUT = 0.2
    settings.MEMORYWEB_SUMMARIZER_RETRIES = 0
    provider.script = [Reply(body=quoting(), delay=3.0)]

    report = build(alpha)

    assert report.built == {} and len(report.failed) == COUNTS["segment"]
    assert all(f["retryable"] and "no answer within 0.2 s" in f["error"] for f in report.failed)
    assert len(provider.requests) == COUNTS["segment"]
    assert not RollupNode.objects.exists()
    assert not Memory.objects.filter(kind=MemoryKind.SUMMARY).exists()

    # The upstream is fast again (a timeout that no loaded machine makes it miss).
    settings.MEMORYWEB_SUMMARIZER_TIMEOUT = 5.0
    provider.script, provider.requests[:] = [Reply(body=quoting())], []
    resumed = build(alpha)

    assert resumed.ok and resumed.built == COUNTS
    assert len(provider.requests) == sum(COUNTS.values())
    assert_nothing_half_built(alpha)
