"""Admission's edges under the deadline (apps/gateway/memory.py ``admit_within``;
docs/gateway.md "Fail-open"): the wait for an admission that already drew the rate budget
is bounded too (and the budget never drawn twice); the database's answer, once given,
wins over a fail-open (a revoked key is refused at the deadline); the admission as
remembered reads no SQL and survives a database error; a request cancelled while its
admission is queued gives the breaker's probe back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import OperationalError

from apps.core.asgi import request_pool
from apps.gateway import memory
from apps.tenancy import key_cache
from apps.tenancy.services import authenticate_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_key_cache")]


def _admit(raw: str, seconds: float = 0.285, with_memory: bool = False) -> memory.Admission:
    return asyncio.run(memory.admit_within(raw, {}, with_memory, seconds))


def test_the_wait_for_an_admission_past_the_database_is_bounded(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None  # seen: remembered from now on
    draws: list[str] = []
    drawn = threading.Event()
    real = memory.budget.draw

    def slow(label, *args, **kwargs):  # the rate budget's Redis blocks
        draws.append(threading.current_thread().name)
        time.sleep(1.0)
        drawn.set()
        return real(label, *args, **kwargs)

    monkeypatch.setattr(memory.budget, "draw", slow)
    began = time.perf_counter()
    admission = _admit(agent.raw, 0.1)
    took = time.perf_counter() - began
    assert admission.fail_open == "timeout" and admission.refusal is None
    assert admission.principal.key_id == agent.key.pk
    assert took < 0.5, took  # not the second the budget took
    assert drawn.wait(3)
    assert len(draws) == 1  # the admission's thread drew it; the fail-open did not again
    assert not key_cache.breaker.down  # the database answered


def test_a_key_the_database_refuses_at_the_deadline_is_refused(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None
    read = memory.authenticate_key

    def revoked(raw_key):  # the database answers "no such key" just past the deadline
        read(raw_key)
        time.sleep(0.15)
        return None

    class Late(memory.Claim):
        def give_up(self):  # the request gets to give up only after the answer came
            time.sleep(0.3)
            return super().give_up()

    monkeypatch.setattr(memory, "authenticate_key", revoked)
    monkeypatch.setattr(memory, "Claim", Late)
    admission = _admit(agent.raw, 0.1)
    assert admission.fail_open is None
    assert admission.refusal is not None and admission.refusal[0] == 401


def test_the_admission_as_remembered_refuses_a_key_without_a_namespace_unread(
        system_admin, django_assert_num_queries):
    key = authenticate_key(system_admin.raw)
    with django_assert_num_queries(0), pytest.raises(memory.Unavailable):
        memory.admit_remembered(key, {memory.NAMESPACE_HEADER: "alpha"}, True, "error", None,
                                True)


def test_the_admission_as_remembered_reads_no_sql(agent, django_assert_num_queries):
    assert _admit(agent.raw).fail_open is None
    known = key_cache.remembered(agent.raw, 3600)
    with django_assert_num_queries(0):
        admission = memory.admit_remembered(known, {}, True, "error", None, True)
    assert admission.fail_open == "error" and admission.namespace.slug == "alpha"


def test_a_database_error_admitting_as_remembered_still_fails_open(agent, monkeypatch):
    assert _admit(agent.raw).fail_open is None
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 60.0)
    key_cache.breaker.attempt().failed()  # down: admitted as remembered at once

    def broken(principal, slug):
        raise OperationalError("the database went away")

    monkeypatch.setattr(memory, "resolve_namespace", broken)
    admission = _admit(agent.raw, with_memory=True)
    assert admission.refusal is None and admission.fail_open == "error"
    assert isinstance(admission.failure, OperationalError)
    assert admission.principal.key_id == agent.key.pk
    assert admission.namespace.slug == "alpha"  # its own upstream, if it has one
    assert admission.decision.recall  # the gateway says so (X-Memory-Fail-Open), counted
    named = asyncio.run(memory.admit_within(agent.raw, {memory.NAMESPACE_HEADER: "beta"}, True,
                                            0.285))
    assert named.refusal is not None and named.refusal[0] == 404  # as with the database


def test_a_request_cancelled_while_its_admission_is_queued_gives_the_probe_back(
        team_admin, monkeypatch):
    monkeypatch.setattr(key_cache, "RETRY_SECONDS", 0.0)
    key_cache.breaker.attempt().failed()  # down: the next attempt is a probe

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = request_pool()
        busy = [loop.run_in_executor(pool, time.sleep, 0.5) for _ in range(pool._max_workers)]
        await asyncio.sleep(0.05)
        # Not seen: it waits for the database (a probe), queued behind the busy pool.
        waiting = asyncio.ensure_future(memory.admit_within(team_admin.raw, {}, False, 0.285))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiting
        probe = key_cache.breaker.attempt()  # the lease was given back at once
        assert probe is not None and probe.probe
        probe.abandon()
        await asyncio.gather(*busy)

    asyncio.run(scenario())
