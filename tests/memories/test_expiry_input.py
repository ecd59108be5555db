"""An expiry already past is refused on every door (issue 16, item 9).

A memory stored with ``expires_at`` in the past was acknowledged with an id that was
404 at once; an edit to a past expiry deleted the memory in effect. Both are 400 now,
and nothing is stored or changed. Imports keep what their source held (retention then
erases it), so they are the one exception.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.memories import services
from apps.memories.models import IndexOutbox, Memory
from apps.tenancy.principal import Principal

PAST = "2000-01-01T00:00:00Z"


def _expiry_error(response):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "expires_at"
    assert error["message"] == "expires_at must be in the future."
    return error


def test_rest_ingest_with_a_past_expiry_is_400_and_stores_nothing(agent):
    _expiry_error(agent.post("/api/v1/memories", {"content": "exp2", "expires_at": PAST}))
    assert not Memory.objects.exists() and not IndexOutbox.objects.exists()


def test_an_expiry_of_right_now_is_past_too(agent):
    now = timezone.now().isoformat()
    _expiry_error(agent.post("/api/v1/memories", {"content": "now", "expires_at": now}))


def test_batch_item_with_a_past_expiry_refuses_the_whole_batch(agent):
    response = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": "fine"}, {"content": "stale", "expires_at": PAST}]})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "memories[1].expires_at"
    assert not Memory.objects.exists()


def test_cmm_ingest_with_a_past_expiry_is_400(agent):
    response = agent.post("/cmm/ingest", {"gist": "old news", "expires_at": PAST})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "expires_at"
    assert not Memory.objects.exists()


def test_service_ingest_refuses_it_for_every_other_door(agent, alpha):
    from apps.core.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        services.ingest(Principal.for_key(agent.key), {"content": "ws", "expires_at": PAST})
    assert raised.value.field == "expires_at"


def test_a_future_expiry_is_stored(agent):
    later = (timezone.now() + dt.timedelta(days=1)).isoformat()
    response = agent.post("/api/v1/memories", {"content": "soon gone", "expires_at": later})
    assert response.status_code == 201, response.content
    assert agent.get(f"/api/v1/memories/{response.json()['id']}").status_code == 200


def test_an_edit_to_a_past_expiry_is_refused_and_changes_nothing(team_admin, stored):
    memory = stored("keep me")
    _expiry_error(team_admin.patch(f"/api/v1/memories/{memory['id']}", {"expires_at": PAST}))
    row = Memory.objects.get(pk=memory["id"])
    assert row.expires_at is None and row.version == 1


def test_an_import_keeps_a_source_memorys_past_expiry(team_admin, alpha):
    from apps.memories.imports import ImportInput
    from apps.memories.schemas import validate

    cleaned = validate(ImportInput, {"content": "held at the source", "expires_at": PAST})
    assert cleaned["expires_at"].year == 2000
