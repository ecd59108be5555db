"""Building a timeline: every level from scratch with grips that resolve, checkpoints (only
what changed is summarised again), a failing summariser that leaves nothing half-built,
periods emptied and removed, an agent's own tree."""

from __future__ import annotations

from apps.audit.models import AuditEntry
from apps.core.kinds import MemoryKind
from apps.core.roles import Role
from apps.memories.models import Memory
from apps.timeline.build import SUMMARY_AGENT, build
from apps.timeline.models import Grip, NodeStatus, RollupNode, RollupSource
from tests.helpers.callers import make_caller
from tests.timeline.conftest import COUNTS, store


def _revisions(alpha, agent_id: str = "") -> dict[tuple[str, str, str], int]:
    return {(n.level, n.start.isoformat(), n.session_id): n.revision
            for n in RollupNode.objects.filter(namespace=alpha, agent_id=agent_id)}


def test_a_first_build_makes_every_level_with_grips_to_the_sources(alpha, history, tree):
    report = build(alpha)

    assert report.ok and report.built == COUNTS
    nodes = tree()
    assert {level: len(found) for level, found in nodes.items()} == COUNTS
    day = {n.start.date().isoformat(): n for n in nodes["day"]}
    assert set(day) == {"2024-01-30", "2024-01-31", "2024-02-02"}
    assert [n.source_count for n in nodes["segment"]] == [3, 1, 1, 2, 2, 1]
    assert day["2024-01-30"].source_count == 5 and nodes["year"][0].source_count == 10
    # Calendar bounds in UTC; the ISO week of Mon Jan 29 hangs under February (Thursday).
    week, (january, february), year = nodes["week"][0], nodes["month"], nodes["year"][0]
    assert (week.start.isoformat(), week.end.isoformat()) == ("2024-01-29T00:00:00+00:00",
                                                              "2024-02-05T00:00:00+00:00")
    assert week.parent_id == february.pk and january.parent_id == year.pk
    assert {d.parent_id for d in nodes["day"]} == {week.pk}
    assert all(s.parent_id == day[s.start.date().isoformat()].pk for s in nodes["segment"])

    sources = {memory_id: Memory.objects.get(pk=memory_id) for memory_id in history.values()}
    for level, found in nodes.items():
        for node in found:
            assert node.status == NodeStatus.OK and node.summary and node.summarizer == "extractive"
            grips = list(Grip.objects.filter(node=node))
            assert grips, (level, node.summary)
            for grip in grips:  # every grip, at every level, quotes a real source
                source = sources[str(grip.memory_id)]
                assert grip.excerpt in source.content and source.kind != MemoryKind.SUMMARY
                assert grip.part < len(node.parts)
    # The whole history is in the year's summary, its grips reaching each source.
    assert set(str(g.memory_id) for g in Grip.objects.filter(node=year)) == set(history.values())
    assert sorted(str(i) for i in RollupSource.objects.values_list("memory_id", flat=True)) == \
        sorted(history.values())


def test_each_node_is_a_recallable_summary_memory(alpha, history, tree, agent):
    build(alpha)
    day = tree()["day"][1]  # 2024-01-31
    memory = day.memory
    assert memory.kind == MemoryKind.SUMMARY and memory.agent_id == SUMMARY_AGENT
    assert memory.content.startswith("Day 2024-01-31 (UTC), 2 sources:\n")
    assert memory.content.endswith(day.summary) and memory.occurred_at == day.start
    assert memory.metadata["timeline_node"] == str(day.pk)
    assert Memory.objects.filter(kind=MemoryKind.SUMMARY).count() == sum(COUNTS.values())
    recalled = agent.post("/api/v1/recall", {"query": "when is the Berlin offsite?", "k": 20,
                                             "filters": {"kind": "summary"}}).json()
    assert str(memory.pk) in [hit["id"] for hit in recalled["results"]]
    entries = AuditEntry.objects.filter(operation="timeline.build")
    assert entries.count() == sum(COUNTS.values())
    assert "Berlin" not in str(list(entries.values_list("summary", flat=True)))


def test_a_second_build_with_nothing_new_summarises_nothing(alpha, history, flaky):
    build(alpha)
    before = _revisions(alpha)
    counting = flaky(lambda sources: False)
    report = build(alpha, summarizer=counting)
    # The summary memories the first build stored are not inputs: no day changed.
    assert report.ok and report.built == {} and counting.calls == 0
    assert report.unchanged == COUNTS["day"] + COUNTS["week"] + COUNTS["month"] + COUNTS["year"]
    assert _revisions(alpha) == before


def test_a_changed_day_rebuilds_that_day_and_its_week_month_and_year_only(
        alpha, history, team_admin, tree):
    build(alpha)
    before, memories_before = _revisions(alpha), {n.pk: n.memory_id for n in RollupNode.objects.all()}
    edited = team_admin.patch(f"/api/v1/memories/{history['venue']}",
                              {"content": "Priya booked the venue near the river."})
    assert edited.status_code == 200

    report = build(alpha)

    assert report.built == {"segment": 1, "day": 1, "week": 1, "month": 1, "year": 1}
    after = _revisions(alpha)
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {("segment", "2024-01-31T14:00:00+00:00", "s3"),
                       ("day", "2024-01-31T00:00:00+00:00", ""),
                       ("week", "2024-01-29T00:00:00+00:00", ""),
                       ("month", "2024-01-01T00:00:00+00:00", ""),
                       ("year", "2024-01-01T00:00:00+00:00", "")}
    for node in RollupNode.objects.all():
        key = (node.level, node.start.isoformat(), node.session_id)
        if key in changed:  # a new summary memory replaced the old one, which is gone
            assert "river" in node.summary and "Alexanderplatz" not in node.summary
            assert node.memory_id != memories_before[node.pk]
            assert not Memory.objects.filter(pk=memories_before[node.pk]).exists()
        else:
            assert node.memory_id == memories_before[node.pk]
    assert "Alexanderplatz" not in str(list(Memory.objects.values_list("content", flat=True)))


def test_a_failing_summariser_leaves_the_node_as_it_was_and_the_next_run_completes(
        alpha, history, team_admin, flaky, tree):
    build(alpha)
    segment = next(n for n in tree()["segment"] if n.session_id == "s3")
    kept = (segment.summary, segment.revision, segment.memory_id,
            sorted(Grip.objects.filter(node=segment).values_list("excerpt", flat=True)))
    before = _revisions(alpha)
    team_admin.patch(f"/api/v1/memories/{history['venue']}",
                     {"content": "Priya booked the venue near the river."})

    report = build(alpha, summarizer=flaky(lambda sources: any("river" in s.text for s in sources)))

    assert not report.ok and [f["level"] for f in report.failed] == ["segment"]
    assert report.failed[0]["retryable"] is True and "429" in report.failed[0]["error"]
    assert report.waiting == 4  # its day, week, month and year wait for it
    segment.refresh_from_db()
    assert (segment.summary, segment.revision, segment.memory_id,
            sorted(Grip.objects.filter(node=segment).values_list("excerpt", flat=True))) == kept
    assert _revisions(alpha) == before  # nothing above it was built from a half-state
    assert not RollupNode.objects.filter(summary__contains="river").exists()

    resumed = build(alpha)
    assert resumed.ok and resumed.built == {"segment": 1, "day": 1, "week": 1, "month": 1,
                                            "year": 1}
    assert all("river" in n.summary for n in RollupNode.objects.exclude(
        start__date="2024-01-30").exclude(start__date="2024-02-02").exclude(level="month",
                                                                           start__month=2))


def test_a_failure_in_the_first_build_builds_no_ancestor_of_the_missing_node(
        alpha, history, flaky, tree):
    report = build(alpha, summarizer=flaky(lambda sources: any("Alexanderplatz" in s.text
                                                               for s in sources)))
    nodes = tree()
    assert [f["level"] for f in report.failed] == ["segment"]
    assert len(nodes["segment"]) == 5 and len(nodes["day"]) == 2
    assert nodes["week"] == [] and nodes["year"] == []  # they would be built from a gap
    assert [m.start.month for m in nodes["month"]] == [2]  # February has all its days
    assert build(alpha).built == {"segment": 1, "day": 1, "week": 1, "month": 1, "year": 1}
    assert {level: len(found) for level, found in tree().items()} == COUNTS


def test_a_period_whose_memories_are_gone_is_removed_with_its_summary_memory(
        alpha, history, team_admin, tree):
    build(alpha)
    february = next(n for n in tree()["month"] if n.start.month == 2)
    removed_memories = [n.memory_id for n in RollupNode.objects.filter(start__date="2024-02-02")]
    for name in ("release", "notes", "rota"):
        assert team_admin.delete(f"/api/v1/memories/{history[name]}").status_code == 204

    report = build(alpha)

    nodes = tree()
    assert [d.start.date().isoformat() for d in nodes["day"]] == ["2024-01-30", "2024-01-31"]
    assert len(nodes["segment"]) == 4 and len(nodes["month"]) == 1
    assert report.removed == 4  # two segments, the day, February
    assert not RollupNode.objects.filter(pk=february.pk).exists()
    assert not Memory.objects.filter(pk__in=removed_memories).exists()
    week = nodes["week"][0]
    assert week.parent_id == nodes["month"][0].pk  # January now: February is gone
    assert "Release 2.4" not in week.summary and "Release 2.4" not in nodes["year"][0].summary
    assert AuditEntry.objects.filter(operation="timeline.remove").count() == 4


def test_an_agents_own_timeline_holds_only_its_memories(alpha, history, tree):
    other = make_caller(Role.AGENT, alpha, "agent-2")
    mine = store(other, {"plan": ("s9", "2024-01-30T15:00:00Z", "Kim drafted the Q2 hiring plan.")})
    assert build(alpha, agent_id="agent-2").built == {"segment": 1, "day": 1, "week": 1,
                                                      "month": 1, "year": 1}
    own = tree("agent-2")
    assert own["year"][0].summary == "Kim drafted the Q2 hiring plan."
    assert own["day"][0].memory.agent_id == "agent-2"
    assert [str(g.memory_id) for g in Grip.objects.filter(node=own["year"][0])] == [mine["plan"]]
    assert tree()["day"] == []  # the namespace's own timeline is built separately
    assert build(alpha).ok and "hiring" in tree()["year"][0].summary


def test_a_second_build_of_the_same_timeline_waits_its_turn(alpha, history):
    from django.utils import timezone

    from apps.timeline.models import RollupState

    RollupState.objects.create(namespace=alpha, agent_id="", running_since=timezone.now(),
                               lease="held")
    report = build(alpha)
    assert report.skipped == "busy" and not RollupNode.objects.exists()


def test_segments_follow_sessions_and_pauses(alpha, agent, tree, settings):
    settings.MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES = 5
    store(agent, {"a": ("s1", "2024-03-05T10:00:00Z", "Alpha one."),
                  "b": ("s1", "2024-03-05T10:04:00Z", "Alpha two."),
                  "c": ("s1", "2024-03-05T10:10:00Z", "Alpha three."),
                  "d": ("s2", "2024-03-05T10:01:00Z", "Beta one.")})
    build(alpha)
    segments = [(s.session_id, s.start.strftime("%H:%M"), s.end.strftime("%H:%M"), s.source_count)
                for s in tree()["segment"]]
    assert segments == [("s1", "10:00", "10:04", 2), ("s2", "10:01", "10:01", 1),
                        ("s1", "10:10", "10:10", 1)]
