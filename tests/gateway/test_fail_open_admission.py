"""Admission's deadline blames the database only for the database's own time
(apps/gateway/memory.py ``admit_within``; docs/gateway.md "Fail-open"): a request that
waited its deadline out in the request pool's queue fails open for itself (``busy``) and
leaves the breaker alone; a tiny budget still gives the database a floor; any failure of
the database (``django.db.Error``, not only ``DatabaseError``) fails a known key open and
ends the attempt. Over the wire, with PostgreSQL cut and hung: test_fail_open_grace.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import InterfaceError

from apps.core.asgi import request_pool
from apps.gateway import memory
from apps.tenancy import key_cache

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_key_cache")]


def _admit(raw: str, seconds: float = 0.285) -> memory.Admission:
    return asyncio.run(memory.admit_within(raw, {}, False, seconds))


def test_a_busy_request_pool_neither_trips_the_breaker_nor_delays_the_fail_open(
        agent, team_admin):
    assert _admit(agent.raw).fail_open is None  # seen: remembered from now on

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = request_pool()
        busy = [loop.run_in_executor(pool, time.sleep, 0.8) for _ in range(pool._max_workers)]
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        queued = await memory.admit_within(agent.raw, {}, False, 0.285)
        took = time.perf_counter() - began
        assert queued.fail_open == "busy" and queued.refusal is None
        assert queued.principal.key_id == agent.key.pk
        assert not key_cache.breaker.down  # the database was never asked: not its fault
        assert took < 0.45  # the fail-open does not queue behind the busy pool
        await asyncio.gather(*busy)
        unseen = await memory.admit_within(team_admin.raw, {}, False, 0.285)
        assert unseen.fail_open is None and unseen.refusal is None  # not a 503

    asyncio.run(scenario())
    assert _admit(agent.raw).fail_open is None


def test_a_tiny_budget_still_gives_the_database_its_floor(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None
    read = memory.authenticate_key

    def healthy(raw_key):  # a database that answers in 20 ms
        time.sleep(0.02)
        return read(raw_key)

    monkeypatch.setattr(memory, "authenticate_key", healthy)
    for _ in range(3):  # budget - forward_reserve(budget) is 0 at a 10 ms budget
        admission = _admit(agent.raw, 0.0)
        assert admission.fail_open is None and admission.refusal is None
    assert not key_cache.breaker.down


def test_an_interface_error_fails_a_known_key_open_and_ends_the_attempt(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)

    def broken(raw_key):
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(memory, "authenticate_key", broken)
    admission = _admit(agent.raw)
    assert admission.fail_open == "error" and isinstance(admission.failure, InterfaceError)
    assert key_cache.breaker.down
    admission = _admit(agent.raw)  # a probe, which fails too
    assert admission.fail_open == "error"
    probe = key_cache.breaker.attempt()  # its lease is not held: the next one may probe
    assert probe is not None and probe.probe
    probe.failed()


def test_any_other_failure_of_admission_ends_the_attempt(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)
    key_cache.breaker.attempt().failed()  # down: the next attempt is a probe

    def broken(raw_key):
        raise RuntimeError("not the database")

    monkeypatch.setattr(memory, "authenticate_key", broken)
    with pytest.raises(RuntimeError):
        _admit(agent.raw)
    assert key_cache.breaker.attempt() is not None  # the probe's lease was given back


def test_a_claim_given_up_while_queued_never_starts():
    claim = memory.Claim()
    assert claim.give_up() == (True, None)  # still queued
    assert not claim.start() and not claim.take()
    claim = memory.Claim()
    assert claim.start()
    ours, began = claim.give_up()
    assert ours and began is not None and began <= time.monotonic()
    claim = memory.Claim()
    assert claim.start() and claim.take()
    assert claim.give_up() == (False, None)  # the admission draws: wait for it
