"""Key lifecycle over REST: team admins list, create, rotate, expire and revoke keys;
the secret is shown once; every change takes effect on the next request."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenancy.models import ApiKey

KEYS = "/api/v1/namespaces/alpha/keys"


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _works(raw: str) -> bool:
    return _client(raw).get("/api/v1/memories").status_code == 200


def test_team_admin_lists_keys_without_secrets(team_admin, agent, reader):
    response = team_admin.get(KEYS)
    assert response.status_code == 200
    rows = response.json()
    assert {r["prefix"] for r in rows} == {agent.key.prefix, reader.key.prefix, team_admin.key.prefix}
    assert all("key" not in r and "key_hash" not in r for r in rows)
    assert all(r["status"] == "active" and r["namespace"] == "alpha" for r in rows)
    assert agent.raw not in response.content.decode()


def test_create_shows_the_secret_once_and_it_works(team_admin):
    response = team_admin.post(KEYS, {"role": "reader", "agent_id": "dashboard", "name": "ro"})
    assert response.status_code == 201
    body = response.json()
    assert body["key"].startswith("mw_read_") and body["role"] == "reader"
    assert _works(body["key"])
    listed = team_admin.get(KEYS).json()
    assert body["key"] not in str(listed)
    assert ApiKey.objects.get(pk=body["id"]).key_hash != body["key"]


@pytest.mark.parametrize("body, field", [
    ({"role": "system", "agent_id": "x"}, "role"),
    ({"role": "agent", "agent_id": "bad id!"}, "agent_id"),
    ({"role": "agent"}, "agent_id"),
    ({"role": "agent", "agent_id": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"role": "agent", "agent_id": "x", "secret": "mine"}, "secret"),
])
def test_bad_key_requests_are_400(team_admin, body, field):
    count = ApiKey.objects.count()
    response = team_admin.post(KEYS, body)
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert ApiKey.objects.count() == count


def test_rotate_keeps_the_old_secret_for_the_grace_period(team_admin, agent):
    response = team_admin.post(f"{KEYS}/{agent.key.pk}/rotate", {"grace_seconds": 600})
    assert response.status_code == 201
    new = response.json()
    assert new["agent_id"] == agent.key.agent_id and new["role"] == "agent"
    assert _works(new["key"]) and _works(agent.raw)
    old = ApiKey.objects.get(pk=agent.key.pk)
    assert dt.timedelta(seconds=590) < old.expires_at - timezone.now() <= dt.timedelta(seconds=600)


def test_rotate_with_no_grace_cuts_the_old_secret_off(team_admin, agent):
    new = team_admin.post(f"{KEYS}/{agent.key.pk}/rotate", {"grace_seconds": 0}).json()
    assert not _works(agent.raw) and _works(new["key"])


def test_revoke_takes_effect_on_the_next_request(team_admin, agent):
    assert _works(agent.raw)
    assert team_admin.delete(f"{KEYS}/{agent.key.pk}").status_code == 204
    assert agent.get("/api/v1/memories").status_code == 401
    assert team_admin.delete(f"{KEYS}/{agent.key.pk}").status_code == 204  # idempotent
    row = next(r for r in team_admin.get(KEYS).json() if r["id"] == agent.key.pk)
    assert row["status"] == "revoked"
    assert team_admin.post(f"{KEYS}/{agent.key.pk}/rotate", {}).status_code == 400


def test_expiry_is_set_and_cleared(team_admin, agent):
    soon = (timezone.now() + dt.timedelta(days=1)).isoformat()
    response = team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": soon})
    assert response.status_code == 200 and response.json()["expires_at"] is not None
    ApiKey.objects.filter(pk=agent.key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert agent.get("/api/v1/memories").status_code == 401
    ApiKey.objects.filter(pk=agent.key.pk).update(expires_at=None)
    assert _works(agent.raw)


@pytest.mark.parametrize("who", ["reader", "agent"])
def test_only_team_admins_manage_keys(callers, who):
    assert callers[who].get(KEYS).status_code == 403
    assert callers[who].post(KEYS, {"role": "agent", "agent_id": "x"}).status_code == 403


def test_another_namespaces_keys_are_404(team_admin, outsider, beta):
    assert team_admin.get("/api/v1/namespaces/beta/keys").status_code == 404
    assert team_admin.delete(f"{KEYS}/{outsider.key.pk}").status_code == 404
    assert team_admin.post(f"{KEYS}/{outsider.key.pk}/rotate", {}).status_code == 404
    assert _works(outsider.raw)


def test_system_admin_manages_any_namespace(system_admin, agent):
    assert system_admin.get(KEYS).status_code == 200
    assert system_admin.delete(f"{KEYS}/{agent.key.pk}").status_code == 204
    assert not _works(agent.raw)


def test_rate_limit_is_per_key_with_retry_after(settings, agent, reader):
    from django.core.cache import cache

    cache.clear()
    settings.MEMORYWEB_RATE_LIMIT = "3/min"
    for _ in range(3):
        assert agent.get("/api/v1/memories").status_code == 200
    limited = agent.get("/api/v1/memories")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0 and limited.json()["error"]["code"] == "throttled"
    assert reader.get("/api/v1/memories").status_code == 200  # another key: its own budget
    cache.clear()


# --- A rotated or revoked key stays dead (issue 16, item 3) ---------------------------


def _rotate(team_admin, key_id: int, grace: int) -> dict:
    response = team_admin.post(f"{KEYS}/{key_id}/rotate", {"grace_seconds": grace})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("expiry", [None, "+1y"])
def test_a_rotated_key_cannot_be_revived_by_an_expiry_edit(team_admin, agent, expiry):
    """The review's repro: rotate with grace 0, then clear (or push out) the old key's
    expiry. The PATCH is refused, changes nothing, and the old secret stays dead."""
    new = _rotate(team_admin, agent.key.pk, 0)
    assert not _works(agent.raw)
    before = ApiKey.objects.get(pk=agent.key.pk).expires_at
    value = None if expiry is None else (timezone.now() + dt.timedelta(days=365)).isoformat()
    response = team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": value})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "expires_at" and "rotated" in error["message"]
    assert new["prefix"] in error["message"]  # names the key that replaced it
    assert ApiKey.objects.get(pk=agent.key.pk).expires_at == before
    assert not _works(agent.raw) and _works(new["key"])
    old = next(r for r in team_admin.get(KEYS).json() if r["id"] == agent.key.pk)
    assert old["status"] != "active" and old["superseded_by"] == new["id"]
    assert old["rotated_at"] is not None


def test_a_key_in_its_grace_period_may_end_sooner_but_never_later(team_admin, agent):
    _rotate(team_admin, agent.key.pk, 600)
    grace_end = ApiKey.objects.get(pk=agent.key.pk).grace_ends_at
    assert grace_end is not None
    later = (grace_end + dt.timedelta(seconds=60)).isoformat()
    refused = team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": later})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "expires_at"
    assert team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": None}).status_code == 400
    sooner = (timezone.now() + dt.timedelta(seconds=120)).isoformat()
    assert team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": sooner}).status_code == 200
    assert _works(agent.raw)  # still inside the (shortened) grace period


def test_a_rotated_key_is_not_rotated_twice(team_admin, agent):
    new = _rotate(team_admin, agent.key.pk, 600)
    again = team_admin.post(f"{KEYS}/{agent.key.pk}/rotate", {"grace_seconds": 0})
    assert again.status_code == 400 and new["prefix"] in again.json()["error"]["message"]
    assert ApiKey.objects.filter(agent_id=agent.key.agent_id).count() == 2


def test_a_revoked_key_cannot_be_given_a_new_expiry(team_admin, agent):
    assert team_admin.delete(f"{KEYS}/{agent.key.pk}").status_code == 204
    later = (timezone.now() + dt.timedelta(days=30)).isoformat()
    for value in (later, None):
        response = team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": value})
        assert response.status_code == 400, response.content
        assert "revoked" in response.json()["error"]["message"]
    assert not _works(agent.raw)


def test_the_database_refuses_to_extend_a_superseded_key(team_admin, agent):
    """Depth: even a write that skips the service (a shell, a data fix) cannot revive a
    rotated key: a constraint keeps its expiry at or before the end of its grace."""
    from django.db import IntegrityError, transaction

    _rotate(team_admin, agent.key.pk, 0)
    for value in (None, timezone.now() + dt.timedelta(days=1)):
        with pytest.raises(IntegrityError), transaction.atomic():
            ApiKey.objects.filter(pk=agent.key.pk).update(expires_at=value)
    assert not _works(agent.raw)


def test_authentication_ignores_a_superseded_key_past_its_grace(team_admin, agent):
    """active() (every door's key lookup) checks the grace end itself, not only expires_at."""
    _rotate(team_admin, agent.key.pk, 600)
    assert ApiKey.objects.active().filter(pk=agent.key.pk).exists()
    past = timezone.now() - dt.timedelta(seconds=1)
    ApiKey.objects.filter(pk=agent.key.pk).update(expires_at=past, grace_ends_at=past)
    assert not ApiKey.objects.active().filter(pk=agent.key.pk).exists()
    assert not _works(agent.raw)
