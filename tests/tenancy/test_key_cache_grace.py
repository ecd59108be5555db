"""The key cache's memory for the gateway while the database is down (apps/tenancy/
key_cache.py: ``remembered``, the sweep, the breaker; docs/gateway.md "Fail-open").
Over the wire, with PostgreSQL cut and hung: tests/gateway/test_fail_open_grace.py."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from apps.tenancy import key_cache
from apps.tenancy.models import ApiKey
from apps.tenancy.services import authenticate_key

pytestmark = pytest.mark.usefixtures("fresh_key_cache")


def test_the_breaker_stops_attempts_after_a_failure_then_lets_one_probe(monkeypatch):
    breaker = key_cache.Breaker()
    first, second = breaker.attempt(), breaker.attempt()
    assert first is not None and second is not None  # up: everyone tries
    first.failed()
    assert breaker.down and breaker.attempt() is None  # within RETRY_SECONDS
    second.ok()  # an attempt begun before the failure answered: the database is back
    assert not breaker.down
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)
    breaker.attempt().failed()  # down, to be tried again at once
    probe = breaker.attempt()
    assert probe is not None and probe.probe
    assert breaker.attempt() is None  # one probe at a time
    probe.failed()
    probe = breaker.attempt()
    probe.ok()
    assert not breaker.down and breaker.attempt() is not None


def test_a_stalled_attempt_holds_the_database_for_itself_until_it_ends(monkeypatch):
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)
    breaker = key_cache.Breaker()
    stuck = breaker.attempt()
    stuck.stalled()  # its request stopped waiting; its thread is still in the database
    assert breaker.down
    assert breaker.attempt() is None  # nobody else waits on the database meanwhile
    stuck.failed()
    assert breaker.attempt() is not None


def test_an_attempt_that_never_ends_does_not_keep_the_database_off_for_ever(monkeypatch):
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)
    breaker = key_cache.Breaker()
    breaker.attempt().stalled()  # stuck on a connection that will never answer
    assert breaker.attempt() is None
    monkeypatch.setattr(key_cache, "PROBE_LEASE_SECONDS", 0.0)
    probe = breaker.attempt()
    assert probe is not None
    probe.ok()
    assert not breaker.down
    ended = key_cache.Breaker().attempt()
    ended.ok()
    ended.stalled()  # it answered just as its request gave up: no harm done
    assert not ended._owner.down


@pytest.mark.django_db(transaction=True)
def test_a_remembered_key_outlives_its_cache_entry_within_the_grace(agent, settings):
    settings.MEMORYWEB_KEY_CACHE_SECONDS = 0.05
    assert authenticate_key(agent.raw).pk == agent.key.pk
    time.sleep(0.1)
    digest = key_cache._entries and next(iter(key_cache._entries))
    assert key_cache.find(digest) is None  # the cache itself reads SQL again
    remembered = key_cache.remembered(agent.raw, grace=3600)
    assert remembered.pk == agent.key.pk and remembered.namespace.slug == "alpha"
    assert key_cache.remembered(agent.raw, grace=0.01) is None  # confirmed too long ago
    assert key_cache.remembered(agent.raw, grace=0) is None
    assert key_cache.remembered(agent.raw + "x", grace=3600) is None


@pytest.mark.django_db(transaction=True)
def test_what_this_process_changes_is_learnt_at_once(agent, system_admin):
    authenticate_key(agent.raw)
    authenticate_key(system_admin.raw)
    assert key_cache.remembered(system_admin.raw, 3600) is None  # no namespace: not served
    key = ApiKey.objects.get(pk=agent.key.pk)
    key.revoked_at = timezone.now()
    key.save()
    assert key_cache.remembered(agent.raw, 3600) is None


@pytest.mark.django_db(transaction=True)
def test_the_sweep_drops_keys_changed_elsewhere_and_confirms_the_rest(agent, team_admin):
    authenticate_key(agent.raw)
    authenticate_key(team_admin.raw)
    before = {entry.key_id: entry.confirmed for entry in key_cache._entries.values()}
    # Another process's data fix: a queryset update, which no signal announces.
    ApiKey.objects.filter(pk=agent.key.pk).update(revoked_at=timezone.now())
    assert key_cache.remembered(agent.raw, 3600) is not None  # not learnt yet
    assert key_cache.sweep()
    assert key_cache.remembered(agent.raw, 3600) is None
    assert key_cache.remembered(team_admin.raw, 3600) is not None
    after = {entry.key_id: entry.confirmed for entry in key_cache._entries.values()}
    assert after[team_admin.key.pk] > before[team_admin.key.pk]


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_a_database_known_down_alone_and_says_so_when_it_fails(
        agent, monkeypatch):
    authenticate_key(agent.raw)
    key_cache.breaker.attempt().failed()
    assert key_cache.sweep() is False  # down moments ago: not tried
    key_cache.breaker.reset()

    def broken(*args, **kwargs):
        raise DatabaseError("gone")

    monkeypatch.setattr(ApiKey.objects, "active", broken)
    assert key_cache.sweep() is False
    assert key_cache.breaker.down
    assert key_cache.remembered(agent.raw, 3600) is not None  # kept: nothing was learnt


def test_the_system_check_bounds_the_grace(settings):
    from django.core.checks import Error

    from apps.core.checks import check_gateway

    assert settings.MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS == 3600
    for bad in (-1, 86_401, 1.5):
        settings.MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS = bad
        assert any(m.msg.startswith("MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS")
                   for m in check_gateway() if isinstance(m, Error)), bad
    settings.MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS = 0
    assert not [m for m in check_gateway() if "GRACE" in m.msg]


@pytest.mark.django_db(transaction=True)
def test_the_sweep_ends_its_attempt_whatever_fails(agent, monkeypatch):
    """``InterfaceError`` is no ``DatabaseError``: the database failed all the same. Any
    other exception ends the attempt too, so a probe does not hold its lease."""
    authenticate_key(agent.raw)
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)

    def interface_error(*args, **kwargs):
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(ApiKey.objects, "active", interface_error)
    assert key_cache.sweep() is False
    assert key_cache.breaker.down

    def bug(*args, **kwargs):
        raise RuntimeError("not the database")

    monkeypatch.setattr(ApiKey.objects, "active", bug)
    with pytest.raises(RuntimeError):
        key_cache.sweep()  # as a probe
    assert key_cache.breaker.attempt() is not None  # its lease was given back


def test_no_sweep_thread_runs_inside_a_test_process():
    """The gateway starts the sweep at its first keyed request. Inside a pytest worker that
    thread would read the test database on a second connection while a test holds its
    transaction (SQLite's shared cache: "database table is locked"), so the test plugin
    keeps it out; the tests here call :func:`key_cache.sweep` themselves."""
    key_cache.keep_fresh(30.0)
    assert not [t for t in threading.enumerate() if t.name == "key-cache-sweep"]
