"""Erasure reaches rollups built from a merged text (docs/timeline.md, "Erasure"): when a
certified erasure takes back a kept survivor's merged text drawn from the erased member
(apps/memories/merge_marks.py), the nodes built from the survivor while it held that text
are emptied in the erasure's transaction and rebuilt from its reverted text after the
commit; the certificate lists them, and the erasure's check fails while a node still
quotes the merged text."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from apps.core.kinds import MemoryKind
from apps.memories import stores
from apps.memories.models import Memory
from apps.tenancy.principal import Principal
from apps.timeline import erasure
from apps.timeline.build import build
from apps.timeline.models import Grip, NodeStatus, RollupNode, RollupSource
from tests.helpers.erasure import erase_through_requests
from tests.timeline.conftest import store

#: Commits for real: the erasure's steps and the audit anchor, as certificates check them.
pytestmark = pytest.mark.django_db(transaction=True)
RARE = "zorblax"
MEMBER = "The staging database runs PostgreSQL 15 on host db-2."
SURVIVOR = "Staging database: PostgreSQL 15, running on host db-2."
MERGED = f"Staging database: PostgreSQL 15 on host db-2 ({RARE} maintenance window on Tuesdays)."


def _timeline(alpha) -> str:
    """Every summary, part and grip excerpt of alpha's timeline, and its summary memories."""
    return "\n".join([
        *RollupNode.objects.filter(namespace=alpha).values_list("summary", flat=True),
        *(p for parts in RollupNode.objects.filter(namespace=alpha).values_list(
            "parts", flat=True) for p in parts),
        *Grip.objects.filter(node__namespace=alpha).values_list("excerpt", flat=True),
        *Memory.objects.filter(namespace=alpha, kind=MemoryKind.SUMMARY).values_list(
            "content", flat=True)])


@pytest.fixture
def merged(alpha, agent, history, team_admin) -> dict[str, str]:
    """The history plus a note of Jan 31 and one of Feb 2 merged into it with a text of
    their own (naming RARE), then the timeline built: the nodes of Jan 31 quote the merged
    text, and name no erased member (those of Feb 2 do)."""
    from apps.lifecycle.consolidation import merge

    ids = store(agent, {"member": ("s6", "2024-02-02T16:00:00Z", MEMBER),
                        "survivor": ("s5", "2024-01-31T16:05:00Z", SURVIVOR)})
    outcome = merge(Principal.for_key(team_admin.key), "alpha",
                    [ids["member"], ids["survivor"]], ids["survivor"], content=MERGED)
    assert outcome.merged == 1 and outcome.rewritten, outcome.rewrite_error
    assert build(alpha).ok
    assert RARE in _timeline(alpha)
    return ids


def test_the_nodes_quoting_a_merged_text_taken_back_are_rebuilt(
        alpha, merged, team_admin, system_admin, tmp_path):
    segment = RollupSource.objects.get(memory_id=merged["survivor"]).node
    assert not RollupSource.objects.filter(node=segment, memory_id=merged["member"]).exists()

    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [merged["member"]]})

    assert {"memory": merged["survivor"], "change": "text_reverted"} in certificate[
        "touched"]["merged_survivors"]
    rows = {row["id"]: row["change"] for row in certificate["touched"]["rollups"]}
    assert rows[str(segment.pk)] == "rebuilt"
    assert {row["level"] for row in certificate["touched"]["rollups"]} >= {
        "segment", "day", "week", "month", "year"}
    assert certificate["verification"]["rollups"] == {"remaining": 0, "ok": True}
    assert RARE not in json.dumps(certificate)
    # Rebuilt from the survivor's reverted text: the merged text is nowhere.
    assert Memory.objects.get(pk=merged["survivor"]).content == SURVIVOR
    assert RARE not in _timeline(alpha)
    segment.refresh_from_db()
    assert segment.status == NodeStatus.OK and "running on host db-2" in _timeline(alpha)
    assert RollupSource.objects.filter(node=segment, memory_id=merged["survivor"]).exists()
    assert build(alpha).built == {}

    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))


def test_a_node_still_quoting_the_merged_text_fails_the_erasure_s_check(
        alpha, merged, team_admin, system_admin):
    member = Memory.objects.get(pk=merged["member"])
    done = stores.Erased(ids=(merged["member"],), hashes=(member.content_hash,))
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [merged["member"]]})
    assert certificate["verification"]["rollups"]["ok"]
    assert erasure.remaining(alpha, done) == 0
    # The merged text quoted again (a rebuild from a stale read, a restored backup): the
    # erasure's own check, which holds its fingerprints, finds it.
    day = RollupNode.objects.get(level="day", start__date="2024-01-31")
    RollupNode.objects.filter(pk=day.pk).update(parts=[*day.parts, MERGED])
    assert erasure.remaining(alpha, done) == 1


def test_an_erasure_that_left_the_merged_text_in_a_node_is_not_certified(
        alpha, merged, team_admin, system_admin, monkeypatch):
    """The timeline's erase missing the survivor (as before it asked): its check, holding
    the merged text's fingerprints, refuses to certify (503, retry); the retry empties and
    rebuilds the nodes, and certifies."""
    from apps.memories import merge_marks
    from tests.helpers.erasure import REQUESTS

    created = team_admin.post(REQUESTS, {"namespace": "alpha", "ids": [merged["member"]],
                                         "reason": "ticket 7"})
    request_id = created.json()["id"]
    assert team_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 200
    with monkeypatch.context() as patched:
        patched.setattr(merge_marks, "texts_taken", lambda *args: frozenset())
        refused = system_admin.post(f"{REQUESTS}/{request_id}/execute")
    assert refused.status_code == 503, refused.content
    assert "rollups" in refused.content.decode()
    assert RARE in _timeline(alpha)

    executed = system_admin.post(f"{REQUESTS}/{request_id}/execute")

    assert executed.status_code == 200, executed.content
    assert executed.json()["certificate"]["verification"]["rollups"]["ok"]
    assert RARE not in _timeline(alpha)
