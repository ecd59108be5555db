"""Erasure reaches rollups (issue 20, item 6): through the real certified erasure, every
node that summarised an erased memory is rebuilt without it (or removed when empty), its
grips and sources go, the certificate lists the nodes touched, and ``verify_certificate``
checks that no node or grip holds the erased memory — and fails when one does."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.memories.models import Memory
from apps.timeline.build import build
from apps.timeline.models import Grip, NodeStatus, RollupNode, RollupSource
from tests.helpers.erasure import erase_through_requests
from tests.timeline.conftest import COUNTS, store

#: Commits for real: the erasure's steps and the audit anchor, as certificates check them.
pytestmark = pytest.mark.django_db(transaction=True)
RARE = "zorblaxian"


def _erase(team_admin, system_admin, selector: dict) -> dict:
    return erase_through_requests(team_admin, system_admin, selector)


def _everything(alpha) -> str:
    """Every summary, part and excerpt of alpha's timeline, and its memories' content."""
    texts = [*RollupNode.objects.filter(namespace=alpha).values_list("summary", flat=True),
             *(p for parts in RollupNode.objects.values_list("parts", flat=True) for p in parts),
             *Grip.objects.values_list("excerpt", flat=True),
             *Memory.objects.filter(namespace=alpha).values_list("content", flat=True)]
    return "\n".join(texts)


@pytest.fixture
def with_subject(alpha, agent, history):
    """The history plus Dana's note on Jan 30 (session s1, 09:07), built."""
    dana = store(agent, {"dana": ("s1", "2024-01-30T09:07:00Z", f"Dana's {RARE} allergy: nuts.")},
                 metadata={"subject_id": "dana"})["dana"]
    assert build(alpha).ok
    assert RARE in RollupNode.objects.get(level="year").summary
    return {**history, "dana": dana}


def test_an_erasure_rebuilds_every_node_that_summarised_the_memory(
        alpha, with_subject, team_admin, system_admin, tmp_path):
    before = {n.pk: (n.revision, n.memory_id) for n in RollupNode.objects.all()}
    dana = with_subject["dana"]
    segment = RollupSource.objects.get(memory_id=dana).node
    expected = {segment.pk, *RollupNode.objects.filter(
        level__in=["day"], start__date="2024-01-30").values_list("pk", flat=True),
        *RollupNode.objects.filter(level__in=["week", "year"]).values_list("pk", flat=True),
        *RollupNode.objects.filter(level="month", start__month=1).values_list("pk", flat=True)}

    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})

    touched = certificate["touched"]["rollups"]
    assert {row["id"] for row in touched} == {str(pk) for pk in expected}
    assert {row["change"] for row in touched} == {"rebuilt"}
    assert {row["level"] for row in touched} == {"segment", "day", "week", "month", "year"}
    assert certificate["verification"]["rollups"] == {"remaining": 0, "ok": True}
    assert RARE not in json.dumps(certificate)
    # Rebuilt without it: the rest of each summary is there, the erased words nowhere.
    assert RARE not in _everything(alpha)
    assert not Grip.objects.filter(memory_id=dana).exists()
    assert not RollupSource.objects.filter(memory_id=dana).exists()
    for node in RollupNode.objects.all():
        assert node.status == NodeStatus.OK and node.summary and node.memory_id
        if node.pk in expected:  # a new summary memory; the old one is gone
            assert node.revision > before[node.pk][0] and node.memory_id != before[node.pk][1]
            assert not Memory.objects.filter(pk=before[node.pk][1]).exists()
        else:
            assert (node.revision, node.memory_id) == before[node.pk]
    assert "The staging deploy needs the VPN." in RollupNode.objects.get(pk=segment.pk).summary
    assert {level: RollupNode.objects.filter(level=level).count() for level in COUNTS} == COUNTS
    # The next build finds nothing to do: the rebuilt nodes match their inputs.
    assert build(alpha).built == {}

    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))


def test_erased_text_planted_back_into_the_timeline_fails_the_certificate(
        alpha, with_subject, team_admin, system_admin, tmp_path):
    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
    # The erased memory's whole text copied into a summary part (a buggy summariser, a
    # restored backup): the content itself is gone, its hash in the certificate finds it.
    day = RollupNode.objects.get(level="day", start__date="2024-01-30")
    RollupNode.objects.filter(pk=day.pk).update(parts=[*day.parts, f"Dana's {RARE} allergy: nuts."])
    with pytest.raises(CommandError, match="rollups"):
        call_command("verify_certificate", str(path))


def test_an_erased_summary_memory_stays_erased_until_its_inputs_change(
        alpha, history, agent, team_admin, system_admin):
    assert build(alpha).ok
    day = RollupNode.objects.get(level="day", start__date="2024-01-31")
    week = RollupNode.objects.get(level="week")
    erased_memory, week_revision = day.memory_id, week.revision

    certificate = _erase(team_admin, system_admin, {"ids": [str(erased_memory)]})

    rows = {row["id"]: row["change"] for row in certificate["touched"]["rollups"]}
    assert rows[str(day.pk)] == "erased"
    assert rows[str(week.pk)] == "rebuilt"  # it was built from the day's summary
    assert all(check["ok"] for check in certificate["verification"].values())
    day.refresh_from_db()
    week.refresh_from_db()
    assert (day.status, day.summary, day.memory_id) == (NodeStatus.ERASED, "", None)
    assert not Grip.objects.filter(node=day).exists()
    assert week.revision > week_revision and "Berlin offsite is on March 3" not in week.summary
    assert "Dana moved the launch review" in week.summary  # the other days are still there
    # The same inputs do not bring the erased text back.
    assert build(alpha).built == {}
    assert build(alpha, rebuild=True).ok
    day.refresh_from_db()
    assert (day.status, day.summary, day.memory_id) == (NodeStatus.ERASED, "", None)
    # A new memory that day: the day is summarised again, with it.
    store(agent, {"new": ("s3", "2024-01-31T16:00:00Z", "Priya confirmed the catering.")})
    assert build(alpha).ok
    day.refresh_from_db()
    assert day.status == NodeStatus.OK and "catering" in day.summary and day.memory_id


def test_erasing_a_periods_only_memories_removes_its_nodes(
        alpha, history, team_admin, system_admin):
    assert build(alpha).ok
    february = RollupNode.objects.get(level="month", start__month=2)
    old_memories = list(RollupNode.objects.filter(start__date="2024-02-02").values_list(
        "memory_id", flat=True))
    ids = [history[name] for name in ("release", "notes", "rota")]

    certificate = _erase(team_admin, system_admin, {"ids": ids})

    assert str(february.pk) in {row["id"] for row in certificate["touched"]["rollups"]}
    assert certificate["verification"]["rollups"]["ok"]
    assert not RollupNode.objects.filter(start__date="2024-02-02").exists()
    assert not RollupNode.objects.filter(pk=february.pk).exists()
    assert not Memory.objects.filter(pk__in=old_memories).exists()
    assert "Release 2.4" not in _everything(alpha)
    assert RollupNode.objects.get(level="week").parent.start.month == 1


def test_deleting_the_namespace_takes_its_timeline(alpha, history, system_admin):
    assert build(alpha).ok
    assert system_admin.delete("/api/v1/namespaces/alpha").status_code == 204
    assert not RollupNode.objects.exists() and not Grip.objects.exists()
    assert not RollupSource.objects.exists()


def test_with_a_provider_configured_the_erasure_rebuilds_offline_and_marks_for_the_next_build(
        alpha, with_subject, team_admin, system_admin, settings, flaky):
    # A provider nobody can reach: the erasure must not need it.
    settings.MEMORYWEB_SUMMARIZER = "openai"
    settings.MEMORYWEB_SUMMARIZER_URL = "http://127.0.0.1:9/v1"
    settings.MEMORYWEB_SUMMARIZER_MODEL = "unreachable"
    settings.MEMORYWEB_SUMMARIZER_KEY = "sk-test"
    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})
    rebuilt = {row["id"] for row in certificate["touched"]["rollups"]}
    assert certificate["verification"]["rollups"]["ok"] and RARE not in _everything(alpha)
    pending = set(RollupNode.objects.filter(status=NodeStatus.PENDING).values_list("pk", flat=True))
    assert {str(pk) for pk in pending} == rebuilt
    assert all(n.summary and n.summarizer == "extractive" for n in RollupNode.objects.all())
    # The next build summarises exactly those again, with the configured summariser.
    provider = flaky(lambda sources: False)
    report = build(alpha, summarizer=provider)
    assert report.ok and sum(report.built.values()) == len(rebuilt) == provider.calls
    assert not RollupNode.objects.filter(status=NodeStatus.PENDING).exists()
