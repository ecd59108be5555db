"""Controlled forgetting (issue 21, item 4): weak memories are watched, proposed after a
while in a review list, and forgotten only through a certified erasure a person asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.lifecycle import forgetting
from apps.lifecycle.models import WeakMemory
from apps.memories.models import Memory
from tests.helpers.erasure import erase_through_requests

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/api/v1/namespaces/alpha/forgetting"


@pytest.fixture
def weak_and_strong(alpha, agent, stored):
    """Two old, unimportant, unsure, never-recalled memories and one strong one."""
    long_ago = (timezone.now() - timedelta(days=3 * 365)).isoformat()
    weak = [stored(text, importance=0.0, confidence=0.1, occurred_at=long_ago)["id"]
            for text in ("The printer on floor 2 was jammed once", "Someone said lunch is late")]
    strong = stored("The release train leaves every second Tuesday", importance=1.0)["id"]
    return {"weak": weak, "strong": strong}


def test_weak_memories_are_watched_then_proposed_and_nothing_is_deleted(
        alpha, weak_and_strong, settings):
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 30
    now = timezone.now()
    first = forgetting.review(alpha, now=now)
    assert first["watched"] == 2 and first["proposed"] == 0
    assert set(WeakMemory.objects.values_list("state", flat=True)) == {"watching"}
    later = forgetting.review(alpha, now=now + timedelta(days=31))
    assert later["proposed"] == 2 and later["watched"] == 0
    assert Memory.objects.filter(namespace=alpha).count() == 3  # proposed, not forgotten


def test_the_review_list_and_a_request_through_certified_erasure(
        alpha, weak_and_strong, team_admin, system_admin, agent, settings):
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 0
    forgetting.review(alpha)
    assert agent.get(LIST).status_code == 403
    body = team_admin.get(LIST).json()
    assert body["count"] == 2 and body["floor"] == settings.MEMORYWEB_FORGET_FLOOR
    assert {row["id"] for row in body["results"]} == set(weak_and_strong["weak"])
    assert all(row["strength"] < body["floor"] for row in body["results"])
    # Only proposed ids may be asked for; bad input changes nothing.
    for bad in ({"ids": [weak_and_strong["strong"]]}, {"ids": []}, {"ids": ["nope"]}, {}):
        response = team_admin.post(LIST, bad)
        assert response.status_code == 400 and response.json()["error"]["field"].startswith("ids")
    assert team_admin.get(LIST, {"state": "sideways"}).status_code == 400
    assert team_admin.get(LIST, {"limit": "0"}).status_code == 400
    assert WeakMemory.objects.filter(state="proposed").count() == 2
    asked = team_admin.post(LIST, {"ids": [weak_and_strong["weak"][0]], "reason": "stale"})
    assert asked.status_code == 201, asked.content
    request_id = asked.json()["erasure_request"]
    assert Memory.objects.filter(pk=weak_and_strong["weak"][0]).exists()  # not yet: approval
    assert team_admin.get(LIST, {"state": "requested"}).json()["count"] == 1
    approved = team_admin.post(f"/api/v1/erasure-requests/{request_id}/approve")
    assert approved.status_code == 200, approved.content
    executed = system_admin.post(f"/api/v1/erasure-requests/{request_id}/execute").json()
    assert all(check["ok"] for check in executed["certificate"]["verification"].values())
    assert executed["certificate"]["verification"]["forgetting_review"]["ok"] is True
    assert not Memory.objects.filter(pk=weak_and_strong["weak"][0]).exists()
    assert not WeakMemory.objects.filter(memory_id=weak_and_strong["weak"][0]).exists()


def test_dismissed_stays_and_a_recovered_memory_leaves_the_list(
        alpha, weak_and_strong, team_admin, settings):
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 0
    forgetting.review(alpha)
    kept, other = weak_and_strong["weak"]
    assert team_admin.post(f"{LIST}/dismiss", {"ids": [kept]}).json() == {"dismissed": 1}
    assert team_admin.post(f"{LIST}/dismiss", {"ids": [kept]}).status_code == 400  # not proposed
    # The other is recalled (and edited to matter): it recovers and leaves the list.
    assert team_admin.patch(f"/api/v1/memories/{other}", {"importance": 1.0, "confidence": 1.0}
                            ).status_code == 200
    Memory.objects.filter(pk=other).update(last_recalled_at=timezone.now(), access_count=10)
    result = forgetting.review(alpha)
    assert result["recovered"] == 1
    assert WeakMemory.objects.get(memory_id=kept).state == "dismissed"
    assert not WeakMemory.objects.filter(memory_id=other).exists()
    assert team_admin.get(LIST).json()["count"] == 0


def test_the_job_reviews_every_namespace(alpha, weak_and_strong):
    from apps.ops import jobs

    result = jobs.run_job("review_strength")
    assert result["namespaces"] >= 1 and result["watched"] == 2


def test_an_erasure_request_that_names_them_goes_through_the_usual_path(
        alpha, weak_and_strong, team_admin, system_admin, settings):
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 0
    forgetting.review(alpha)
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"ids": weak_and_strong["weak"]})
    assert certificate["verification"]["forgetting_review"] == {"remaining": 0, "ok": True}
