"""Review fixes of the timeline: an event time at the end of the calendar (year 9999)
neither breaks a build nor an erasure nor browsing; an erasure reaches nodes that quote a
memory through grips only (a rebuild that failed half-way); the erasure's own check finds
a sentence of an erased memory, not only its whole text; expired sources are not served
through grips; a long build renews its lease; an erasure empties nodes in its
transaction and rebuilds them after the commit."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from apps.memories.models import Memory
from apps.timeline import erasure
from apps.timeline.build import LEASE_TIMEOUT, build
from apps.timeline.models import Grip, Level, NodeStatus, RollupNode, RollupSource, RollupState
from tests.timeline.conftest import COUNTS, store

#: Commits for real: erasures, certificates, and what runs after an erasure's commit.
pytestmark = pytest.mark.django_db(transaction=True)
REQUESTS = "/api/v1/erasure-requests"
RARE = "zorblaxian"
#: Two sentences of its own, and one a live memory also holds (the vpn memory).
SECRET = (f"Dana's {RARE} allergy is severe. She carries an epipen to every {RARE} office "
          "meeting. The staging deploy needs the VPN.")


def _request(team_admin, system_admin, selector: dict):
    created = team_admin.post(REQUESTS, {**selector, "reason": "ticket 9"})
    assert created.status_code == 201, created.content
    request_id = created.json()["id"]
    assert team_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 200
    return system_admin.post(f"{REQUESTS}/{request_id}/execute")


def _erase(team_admin, system_admin, selector: dict) -> dict:
    executed = _request(team_admin, system_admin, selector)
    assert executed.status_code == 200, executed.content
    return executed.json()["certificate"]


def _verifies(certificate: dict, tmp_path) -> None:
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))


def _node_texts(alpha) -> str:
    nodes = RollupNode.objects.filter(namespace=alpha)
    return "\n".join([*nodes.values_list("summary", flat=True),
                      *(p for parts in nodes.values_list("parts", flat=True) for p in parts),
                      *Grip.objects.filter(node__namespace=alpha).values_list("excerpt", flat=True),
                      *Memory.objects.filter(namespace=alpha, kind="summary").values_list(
                          "content", flat=True)])


# --- 1. the end of the calendar ---------------------------------------------------------

def test_an_event_in_year_9999_is_left_out_and_erasable(alpha, agent, history, team_admin,
                                                        system_admin, reader, tmp_path):
    posted = agent.post("/api/v1/events", {"events": [
        {"id": "far-1", "event_type": "user_message", "session_id": "far",
         "occurred_at": "9999-12-31T23:00:00Z", "text": "A message from the end of time."}]})
    assert posted.status_code == 201, posted.content
    far = posted.json()["results"][0]["memory_id"]
    last = store(agent, {"last": ("late", "9998-12-31T23:00:00Z", "The last supported hour.")})

    report = build(alpha)

    assert report.ok, report.as_dict()
    years = sorted(n.start.year for n in RollupNode.objects.filter(level=Level.YEAR))
    assert years == [2024, 9998]  # 9998 is in range; the event in 9999 is not an input
    assert not RollupSource.objects.filter(memory_id=far).exists()
    assert RollupSource.objects.filter(memory_id=last["last"]).exists()
    assert build(alpha).built == {}  # and the next run finds nothing to do

    certificate = _erase(team_admin, system_admin, {"ids": [far]})
    assert all(check["ok"] for check in certificate["verification"].values())
    assert not Memory.objects.filter(pk=far).exists()
    _verifies(certificate, tmp_path)

    for name, value in (("to", "9999-12-31"), ("from", "9999-06-01"),
                        ("to", "9999-01-01T00:00:00Z")):
        response = reader.get(f"/api/v1/timeline?{name}={value}")
        assert response.status_code == 400, (name, value, response.content)
        assert response.json()["error"]["field"] == name
    assert reader.get("/api/v1/timeline?level=year&to=9998-12-31").json()["count"] == 2


def test_an_edit_into_year_9999_removes_the_memory_from_the_timeline(alpha, team_admin, history):
    assert build(alpha).ok
    edited = team_admin.patch(f"/api/v1/memories/{history['rota']}",
                         {"occurred_at": "9999-12-31T23:30:00Z"})
    assert edited.status_code == 200, edited.content
    assert build(alpha).ok
    assert not RollupSource.objects.filter(memory_id=history["rota"]).exists()
    assert RollupNode.objects.filter(level=Level.SEGMENT).count() == COUNTS["segment"] - 1
    assert sorted(erasure.touched(alpha, [history["rota"]]), key=str) == []


# --- 2 and 3. erasure reaches nodes by grips; the check finds sentences ----------------

@pytest.fixture
def secret(alpha, agent, history) -> dict[str, str]:
    """The history plus Dana's note of three sentences on Jan 30 (s1, 09:07), built."""
    dana = store(agent, {"dana": ("s1", "2024-01-30T09:07:00Z", SECRET)},
                 metadata={"subject_id": "dana"})["dana"]
    assert build(alpha).ok
    assert RARE in RollupNode.objects.get(level=Level.YEAR).summary
    return {**history, "dana": dana}


def test_an_erasure_reaches_a_day_that_quotes_the_memory_through_grips_only(
        alpha, secret, flaky, team_admin, system_admin, tmp_path):
    dana = secret["dana"]
    # The note expires; the next build rebuilds its segment without it, but the summariser
    # fails for the day: the day keeps its summary (and grips) quoting the note.
    Memory.objects.filter(pk=dana).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    day_fails = flaky(lambda sources: any(s.label.startswith("Segment") for s in sources))
    assert not build(alpha, summarizer=day_fails).ok
    day = RollupNode.objects.get(level=Level.DAY, start__date="2024-01-30")
    assert RARE in day.summary and Grip.objects.filter(node=day, memory_id=dana).exists()
    assert not RollupSource.objects.filter(memory_id=dana).exists()

    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})

    touched = {row["id"] for row in certificate["touched"]["rollups"]}
    assert str(day.pk) in touched
    assert str(RollupNode.objects.get(level=Level.YEAR).pk) in touched
    assert RARE not in _node_texts(alpha)
    assert certificate["verification"]["rollups"] == {"remaining": 0, "ok": True}
    _verifies(certificate, tmp_path)
    assert build(alpha).ok and RARE not in _node_texts(alpha)


def test_the_erasures_check_finds_a_sentence_of_an_erased_memory(
        alpha, secret, team_admin, system_admin):
    # A node that quotes one sentence of the note without naming it (a summariser that
    # copied it where it did not belong): no source row, no grip, not the whole text.
    other = RollupNode.objects.get(level=Level.DAY, start__date="2024-01-31")
    sentence = f"She carries an epipen to every {RARE} office meeting."
    RollupNode.objects.filter(pk=other.pk).update(parts=[*other.parts, sentence])

    executed = _request(team_admin, system_admin, {"subject_id": "dana"})

    assert executed.status_code == 503, executed.content
    assert "rollups" in executed.json()["error"]["message"]


def test_a_sentence_a_live_memory_also_holds_does_not_fail_the_check(
        alpha, secret, team_admin, system_admin, tmp_path):
    # SECRET ends with the vpn memory's sentence: summaries quoting the vpn memory stay.
    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})
    assert certificate["verification"]["rollups"]["ok"]
    assert "The staging deploy needs the VPN." in _node_texts(alpha)
    assert RARE not in _node_texts(alpha)
    _verifies(certificate, tmp_path)


# --- 4. expired sources are not served through grips ------------------------------------

def test_grips_of_expired_memories_are_not_served(alpha, history, reader):
    assert build(alpha).ok
    grip = Grip.objects.filter(memory_id=history["vpn"], node__level=Level.SEGMENT).first()
    kept = Grip.objects.filter(memory_id=history["launch"], node__level=Level.SEGMENT).first()
    assert reader.get(f"/api/v1/grips/{grip.pk}/expand").status_code == 200
    Memory.objects.filter(pk=history["vpn"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert reader.get(f"/api/v1/grips/{grip.pk}/expand").status_code == 404
    opened = reader.get(f"/api/v1/timeline/{grip.node_id}").json()
    assert history["vpn"] not in {g["memory_id"] for g in opened["grips"]}
    assert history["launch"] in {g["memory_id"] for g in opened["grips"]}
    expanded = reader.get(f"/api/v1/grips/{kept.pk}/expand?after=10").json()
    assert history["vpn"] not in {m["id"] for m in expanded["after"]}


# --- 5. the lease is renewed while a build runs -----------------------------------------

def test_a_long_build_renews_its_lease_and_keeps_it(alpha, history):
    seen: list[str] = []

    def progress(done: int, total: int) -> None:
        if done == 1:  # as if the first day had taken longer than the lease lasts
            RollupState.objects.filter(namespace=alpha, agent_id="").update(
                running_since=timezone.now() - LEASE_TIMEOUT - dt.timedelta(minutes=5))
        elif done == 2:  # the second day renewed it: a second build finds it held
            seen.append(build(alpha).skipped)

    report = build(alpha, progress=progress)

    assert report.ok and seen == ["busy"]
    state = RollupState.objects.get(namespace=alpha, agent_id="")
    assert state.running_since is None and state.lease == ""


# --- 6. an erasure empties in its transaction, rebuilds after the commit ----------------

def test_an_erasure_empties_nodes_in_its_transaction_and_rebuilds_after_commit(alpha, secret):
    dana = secret["dana"]
    segment = RollupSource.objects.get(memory_id=dana).node
    with transaction.atomic():
        erasure.erase(alpha, [dana])
        inside = RollupNode.objects.get(pk=segment.pk)
        # Emptied, not yet rebuilt: nothing was summarised inside the transaction.
        assert (inside.status, inside.summary, inside.memory_id) == (NodeStatus.PENDING, "", None)
        assert RARE not in _node_texts(alpha)
        assert RollupNode.objects.filter(status=NodeStatus.PENDING).count() == 5
    after = RollupNode.objects.get(pk=segment.pk)
    assert after.status == NodeStatus.OK and "The staging deploy needs the VPN." in after.summary
    assert not RollupNode.objects.filter(status=NodeStatus.PENDING).exists()
    assert RARE not in _node_texts(alpha)
