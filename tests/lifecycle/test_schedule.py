"""Scheduled consolidation: a namespace's ``consolidation`` setting (validated through
tenancy's registry), the ``consolidate_memories`` job merging where it is due, its state."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.lifecycle.models import ConsolidationState
from apps.lifecycle.tasks import due_namespaces
from apps.memories.models import Memory
from apps.ops import jobs
from apps.tenancy.models import Namespace

TEXTS = ["Production deploys happen on Tuesday afternoons.",
         "Deployments to production happen every Tuesday afternoon.",
         "Our office is closed on public holidays."]


@pytest.fixture
def stored(agent):
    return [agent.post("/api/v1/memories", {"content": t}).json()["id"] for t in TEXTS]


@pytest.mark.parametrize(("value", "field"), [
    ({"enabled": "often"}, "consolidation.enabled"),
    ({"interval_hours": 0}, "consolidation.interval_hours"),
    ({"threshold": 0.2}, "consolidation.threshold"),
    ({"every": 3}, "consolidation.every"),
])
def test_the_setting_is_checked(team_admin, alpha, value, field):
    response = team_admin.patch("/api/v1/namespaces/alpha", {"consolidation": value})
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    alpha.refresh_from_db()
    assert alpha.consolidation == {}


def test_only_enabled_namespaces_are_due_at_their_interval(team_admin, agent, alpha, beta):
    assert due_namespaces() == []
    response = team_admin.patch("/api/v1/namespaces/alpha", {"consolidation": {
        "enabled": True, "interval_hours": 6, "threshold": 0.85}})
    assert response.status_code == 200, response.json()
    assert response.json()["consolidation"] == {"enabled": True, "interval_hours": 6,
                                                "threshold": 0.85}
    assert due_namespaces() == [alpha]
    ConsolidationState.objects.create(namespace=alpha, last_finished_at=timezone.now())
    assert due_namespaces() == []
    assert due_namespaces(timezone.now() + dt.timedelta(hours=6, seconds=1)) == [alpha]
    Namespace.objects.filter(pk=alpha.pk).update(archived_at=timezone.now())
    assert due_namespaces(timezone.now() + dt.timedelta(days=1)) == []


def test_the_job_merges_where_due_and_records_what_it_did(team_admin, alpha, stored):
    assert jobs.run_job("consolidate_memories") == {"namespaces": 0, "merged": 0}
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    team_admin.patch("/api/v1/namespaces/alpha", {"consolidation": {
        "enabled": True, "threshold": 0.85}})
    assert jobs.run_job("consolidate_memories") == {"namespaces": 1, "merged": 1}
    assert Memory.objects.filter(pk__in=stored[:2], superseded_by__isnull=False).count() == 1
    state = ConsolidationState.objects.get(namespace=alpha)
    assert state.last_result["merged"] == 1 and state.last_result["candidates"] == 3
    assert AuditEntry.objects.filter(operation="memory.consolidate",
                                     actor="system:lifecycle").count() == 1
    assert jobs.run_job("consolidate_memories") == {"namespaces": 0, "merged": 0}  # not due
