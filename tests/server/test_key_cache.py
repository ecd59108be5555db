"""The per-process key cache (apps/tenancy/key_cache.py, ``MEMORYWEB_KEY_CACHE_SECONDS``):
no key query on a repeated request, and nothing a change in this process does waits for
the cache: revocation, rotation, a role or expiry change, a namespace archived. An
expiry passes at its moment even while cached; what one request does to its key and
namespace objects reaches no other; the raw key is never kept. (Another process's change,
seen within the window, is tested against a real Daphne: tests/server/test_lean_api_path.py.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.roles import Role
from apps.tenancy import key_cache
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.services import _hash_key, authenticate_key, create_api_key

KEYS = "/api/v1/namespaces/alpha/keys"


@pytest.fixture(autouse=True)
def cache_on(settings):
    settings.MEMORYWEB_KEY_CACHE_SECONDS = 60
    key_cache.clear()
    yield
    key_cache.clear()


def _key_queries(queries: CaptureQueriesContext) -> list[str]:
    """The key lookups among the queries (not the touch of ``last_used_at``)."""
    return [q["sql"] for q in queries.captured_queries
            if "tenancy_apikey" in q["sql"] and q["sql"].lstrip().upper().startswith("SELECT")]


def test_a_second_request_does_no_key_query(agent):
    assert agent.get("/api/v1/namespaces/alpha").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert agent.get("/api/v1/namespaces/alpha").status_code == 200
    assert _key_queries(queries) == []
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_key(agent.raw).pk == agent.key.pk
    # Only the key's namespace, read afresh by primary key (never a cached copy).
    assert [q["sql"].split(" FROM ")[1].split()[0] for q in queries.captured_queries] == [
        '"tenancy_namespace"']


def test_a_cached_key_sees_its_namespace_as_it_is_now(agent, alpha):
    assert authenticate_key(agent.raw).namespace.collection == alpha.collection
    Namespace.objects.filter(pk=alpha.pk).update(collection="swapped")  # as a reindex does
    assert authenticate_key(agent.raw).namespace.collection == "swapped"


def test_with_the_cache_off_every_request_looks_the_key_up(agent, settings):
    settings.MEMORYWEB_KEY_CACHE_SECONDS = 0
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert agent.get("/api/v1/namespaces/alpha").status_code == 200
        # Looked up afresh: its id by prefix, then its row by primary key.
        lookups = _key_queries(queries)
        assert len(lookups) == 2 and '"prefix" = ' in lookups[0] and '"id" IN (' in lookups[1]


def test_an_unseen_key_is_found_by_prefix_and_read_by_primary_key(alpha):
    """No ORM lookup with a join: its id by the prefix, its row and namespace by primary
    key; a key with the right prefix but another hash, or revoked, is refused."""
    key, raw = create_api_key(role=Role.AGENT, agent_id="one", namespace=alpha)
    with CaptureQueriesContext(connection) as queries:
        found = authenticate_key(raw)
    assert found is not None and found.pk == key.pk and found.namespace.slug == "alpha"
    assert not any(" JOIN " in q["sql"] for q in queries.captured_queries)
    key_cache.clear()
    assert authenticate_key(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None  # same prefix
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    key_cache.clear()
    assert authenticate_key(raw) is None


def test_a_revoked_key_is_refused_on_the_next_request(team_admin, agent):
    assert agent.get("/api/v1/memories").status_code == 200
    assert team_admin.delete(f"{KEYS}/{agent.key.pk}").status_code == 204
    assert agent.get("/api/v1/memories").status_code == 401


def test_a_rotated_key_without_grace_is_refused_on_the_next_request(team_admin, agent):
    assert agent.get("/api/v1/memories").status_code == 200
    rotated = team_admin.post(f"{KEYS}/{agent.key.pk}/rotate", {"grace_seconds": 0})
    assert rotated.status_code == 201
    assert agent.get("/api/v1/memories").status_code == 401
    assert authenticate_key(rotated.json()["key"]) is not None


def test_a_changed_expiry_and_role_apply_on_the_next_request(team_admin, agent):
    assert agent.post("/api/v1/memories", {"content": "Agents may store."}).status_code == 201
    key = ApiKey.objects.get(pk=agent.key.pk)
    key.role = Role.READER.label  # an edit that saves the key (the admin's form does)
    key.save()
    refused = agent.post("/api/v1/memories", {"content": "Readers may not."})
    assert refused.status_code == 403
    soon = (timezone.now() + dt.timedelta(days=1)).isoformat()
    assert team_admin.patch(f"{KEYS}/{agent.key.pk}", {"expires_at": soon}).status_code == 200
    assert authenticate_key(agent.raw).expires_at is not None


def test_an_archived_namespace_refuses_writes_on_the_next_request(system_admin, agent):
    """The cached key carries its namespace: a change to the namespace drops it too."""
    assert agent.post("/api/v1/memories", {"content": "Before the archive."}).status_code == 201
    archived = system_admin.patch("/api/v1/namespaces/alpha", {"archived": True})
    assert archived.status_code == 200
    assert agent.post("/api/v1/memories", {"content": "After the archive."}).status_code == 409


def test_an_expired_key_is_refused_while_it_is_cached(alpha):
    expires = timezone.now() + dt.timedelta(seconds=0.5)
    _, raw = create_api_key(role=Role.AGENT, agent_id="brief", namespace=alpha, expires_at=expires)
    assert authenticate_key(raw) is not None
    assert _hash_key(raw) in key_cache._entries  # remembered for 60 s
    while timezone.now() <= expires:
        time.sleep(0.05)
    assert _hash_key(raw) in key_cache._entries  # still remembered...
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_key(raw) is None  # ...and refused
    assert len(_key_queries(queries)) == 1  # (the fallback lookup refuses it too)


def test_each_request_gets_its_own_key_and_namespace(agent):
    name = agent.key.namespace.name
    first = authenticate_key(agent.raw)
    first.role = Role.SYSTEM.label
    first.namespace.name = "changed by one request"
    first.namespace.recall_defaults["mode"] = "lexical"
    second = authenticate_key(agent.raw)
    assert second is not first and second.namespace is not first.namespace
    assert second.role == Role.AGENT.label and second.namespace.name == name
    assert "mode" not in second.namespace.recall_defaults


def test_the_raw_key_is_never_kept(agent):
    authenticate_key(agent.raw)
    assert list(key_cache._entries) == [_hash_key(agent.raw)]
    entry = key_cache._entries[_hash_key(agent.raw)]
    assert agent.raw.encode() not in entry.snapshot and agent.raw not in repr(entry)


def test_a_lookup_that_raced_a_change_is_not_remembered(agent):
    """A request that read the key before a revocation committed must not put the old row
    back: it remembers only if no change came in between."""
    seen = key_cache.generation()
    old_row = ApiKey.objects.select_related("namespace").get(pk=agent.key.pk)
    ApiKey.objects.filter(pk=agent.key.pk).update(revoked_at=timezone.now())
    key_cache.forget(key_id=agent.key.pk)  # what the revocation's signal does
    key_cache.remember(_hash_key(agent.raw), old_row, seen)
    assert authenticate_key(agent.raw) is None


def _expire(raw: str) -> None:
    """The key's entry as it is once its seconds are up (still remembered)."""
    digest = _hash_key(raw)
    key_cache._entries[digest] = dataclasses.replace(key_cache._entries[digest],
                                                     until=time.monotonic() - 1)


def test_a_key_whose_seconds_are_up_is_read_again_by_primary_key(agent):
    assert authenticate_key(agent.raw) is not None
    _expire(agent.raw)
    with CaptureQueriesContext(connection) as queries:
        key = authenticate_key(agent.raw)
    assert key is not None and key.pk == agent.key.pk and key.namespace.slug == "alpha"
    lookups = _key_queries(queries)
    assert len(lookups) == 1 and '"tenancy_apikey"."prefix"' not in lookups[0]  # by pk
    assert key_cache._entries[_hash_key(agent.raw)].until > time.monotonic()  # again 60 s
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_key(agent.raw) is not None
    assert _key_queries(queries) == []


@pytest.mark.parametrize("change", ["revoked", "expired", "deleted"])
def test_a_key_changed_elsewhere_is_refused_when_read_again(agent, change):
    """Changed by a queryset update or a raw delete (another process, a data fix: no
    signal here): the read by primary key sees it, and nothing looks the key up by
    prefix."""
    assert authenticate_key(agent.raw) is not None
    _expire(agent.raw)
    rows = ApiKey.objects.filter(pk=agent.key.pk)
    if change == "deleted":
        rows._raw_delete(rows.db)  # no post_delete signal, as in another process
    else:
        field = {"revoked": "revoked_at", "expired": "expires_at"}[change]
        rows.update(**{field: timezone.now()})
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_key(agent.raw) is None
    assert all('"tenancy_apikey"."prefix"' not in q for q in _key_queries(queries))
    assert agent.get("/api/v1/memories").status_code == 401
