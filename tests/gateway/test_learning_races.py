"""A fact decided twice at once: approval, rejection, edit and promotion by sighting are
serialised on the fact's row, so the loser is told (409) and no memory is stored for a
fact that is not promoted (apps/gateway/learning.py, ``_promote``)."""

from __future__ import annotations

import threading
import time

import pytest

from apps.core.errors import Conflict
from apps.gateway import learning
from apps.gateway.models import FactState, LearnedFact
from apps.memories.models import Memory
from apps.tenancy.principal import Principal

#: The learner's functions tidy the thread's connections, as on the server's threads.
pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Remember that the staging database is on host db-2."


@pytest.fixture(autouse=True)
def no_learner_thread(monkeypatch):
    monkeypatch.setattr(learning, "wake", lambda: None)


@pytest.fixture
def fact(agent, alpha) -> LearnedFact:
    taught = learning.Taught(Principal.for_key(agent.key), alpha)
    assert learning.enqueue(taught, "chat", FACT, "Noted.")
    learning.process_due()
    return LearnedFact.objects.get()


def decided_meanwhile(monkeypatch, fact: LearnedFact, state: str) -> None:
    """Another admin decides the fact between this call's check and its write (in the
    window the unlocked code had: after the state was read, before the memory is stored)."""
    real = learning._teacher

    def teacher_then_race(found):
        LearnedFact.objects.filter(pk=fact.pk).update(state=state, decided_by="other")
        return real(found)

    monkeypatch.setattr(learning, "_teacher", teacher_then_race)


def test_an_approval_that_loses_to_a_rejection_stores_no_memory(monkeypatch, fact, team_admin):
    decided_meanwhile(monkeypatch, fact, FactState.REJECTED)
    admin = Principal.for_key(team_admin.key)
    with pytest.raises(Conflict, match="the fact is rejected"):
        learning.approve(admin, fact)
    assert not Memory.objects.exists()
    fact.refresh_from_db()
    assert (fact.state, fact.memory_id, fact.decided_by) == (FactState.REJECTED, None, "other")


def test_a_rejection_or_edit_that_loses_to_an_approval_changes_nothing(fact, team_admin):
    admin = Principal.for_key(team_admin.key)
    stale = LearnedFact.objects.get(pk=fact.pk)  # read before the approval
    learning.approve(admin, fact)
    promoted = LearnedFact.objects.get(pk=fact.pk)
    for late in (learning.reject, lambda who, f: learning.edit(who, f, "Another text.")):
        # the service re-reads the fact, so let it see the stale state it would have seen
        with pytest.raises(Exception) as refused:
            late(admin, stale)
        assert getattr(refused.value, "status", None) in (400, 409)
    after = LearnedFact.objects.get(pk=fact.pk)
    assert (after.state, after.text, after.memory_id) == (
        FactState.PROMOTED, promoted.text, promoted.memory_id)
    assert Memory.objects.count() == 1


def test_two_approvals_at_once_store_one_memory(fact, team_admin):
    admin = Principal.for_key(team_admin.key)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def approve() -> None:
        from django.db import OperationalError, connection

        start.wait()
        try:
            for _ in range(100):
                try:
                    learning.approve(admin, fact)
                    outcomes.append("approved")
                except OperationalError:  # SQLite's shared-cache test database locks a
                    time.sleep(0.02)  # table at once (no busy wait): retry, as a client would
                    continue
                except Exception as exc:  # the loser: told, not a second memory
                    outcomes.append(f"{getattr(exc, 'status', type(exc).__name__)}")
                break
        finally:
            connection.close()

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # The loser is told: 409 (taken while it ran) or 400 (already promoted when it read).
    assert sorted(outcomes) in (["400", "approved"], ["409", "approved"]), outcomes
    assert Memory.objects.count() == 1
    assert LearnedFact.objects.get().state == FactState.PROMOTED


def test_a_promotion_that_fails_to_store_gives_the_fact_back(monkeypatch, fact, team_admin):
    from apps.memories import services

    def refused(*args, **kwargs):
        raise RuntimeError("the embedder is down")

    monkeypatch.setattr(services, "ingest", refused)
    with pytest.raises(RuntimeError):
        learning.approve(Principal.for_key(team_admin.key), fact)
    fact.refresh_from_db()
    assert (fact.state, fact.memory_id) == (FactState.QUARANTINED, None)
    assert not Memory.objects.exists()


def test_a_promotion_whose_process_stopped_is_quarantined_again(fact):
    from datetime import timedelta

    from django.utils import timezone

    LearnedFact.objects.filter(pk=fact.pk).update(
        state=FactState.PROMOTING, decided_at=timezone.now() - learning.CLAIM - timedelta(1))
    learning.process_due()
    fact.refresh_from_db()
    assert fact.state == FactState.QUARANTINED
