"""Erasure of what an agent taught the gateway when it has no memory (yet), and the
ledger replay that takes those rows again after a restore (docs/privacy.md, "The
stores"; apps/memories/stores.py's ``subject_*`` operations)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import erasure_ledger
from apps.core.roles import Role
from apps.gateway import learning
from apps.gateway.models import GatewayTrace, LearnedFact, PendingExchange
from apps.memories.models import Memory
from apps.privacy import ledger
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller
from tests.helpers.erasure import REQUESTS, erase_through_requests

#: The learner's functions tidy the thread's connections, as on the server's threads; the
#: ledger is appended inside the certificate's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Remember that the staging database is on host db-2."


@pytest.fixture(autouse=True)
def quiet_learner(monkeypatch, settings, tmp_path):
    """The test runs the learner's passes itself; a key store of its own."""
    monkeypatch.setattr(learning, "wake", lambda: None)
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "keystore"


def teach(caller, text: str, *, session: str = "", learn: bool = True) -> None:
    """One answered exchange through the gateway's learning queue (``learn``: extracted
    now, so its fact waits in quarantine; otherwise it stays queued)."""
    taught = learning.Taught(Principal.for_key(caller.key), caller.key.namespace, session)
    assert learning.enqueue(taught, "chat", text, "Noted.")
    if learn:
        learning.process_due()


def trace_of(agent_id: str, namespace) -> None:
    GatewayTrace.objects.create(namespace=namespace, level="metadata", api="chat",
                                agent_id=agent_id, mode="full")


@pytest.fixture
def two_agents(agent, alpha):
    """agent-1 taught a fact (quarantined), has one exchange queued and a trace, and no
    memory; agent-2 taught one too."""
    other = make_caller(Role.AGENT, alpha, "agent-2")
    teach(agent, FACT, session="s-1")
    teach(other, "Remember that we deploy on Tuesdays.")
    teach(agent, "Remember that Ada lives in Lyon.", learn=False)
    trace_of("agent-1", alpha)
    trace_of("agent-2", alpha)
    assert not Memory.objects.exists()
    return other


def held_by(agent_id: str) -> tuple[int, int, int]:
    return (LearnedFact.objects.filter(agent_id=agent_id).count(),
            PendingExchange.objects.filter(agent_id=agent_id).count(),
            GatewayTrace.objects.filter(agent_id=agent_id).count())


def test_an_agent_known_only_to_the_gateway_is_erased_and_certified(
        two_agents, team_admin, system_admin):
    assert held_by("agent-1") == (1, 1, 1)
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "agent_id": "agent-1"})
    assert held_by("agent-1") == (0, 0, 0)
    assert held_by("agent-2") == (1, 0, 1)  # another agent's rows stay
    assert certificate["erased"] == []
    assert certificate["counts"]["gateway_facts"] == 1
    assert certificate["counts"]["gateway_exchanges"] == 1
    assert certificate["counts"]["gateway_traces"] == 1
    for store in ("gateway_facts", "gateway_exchanges", "gateway_traces"):
        assert certificate["verification"][store] == {"remaining": 0, "ok": True}


def test_what_the_agent_sends_while_it_is_erased_does_not_block_the_certificate(
        two_agents, team_admin, system_admin, alpha, monkeypatch):
    """The agent's key still works: a trace it makes after the rows were taken (while the
    vectors are erased) is new data, outside this erasure — which is certified."""
    from apps.memories import writes

    real = writes.erase_after_commit

    def meanwhile(namespace, ids):
        trace_of("agent-1", alpha)
        real(namespace, ids)

    monkeypatch.setattr(writes, "erase_after_commit", meanwhile)
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "agent_id": "agent-1"})
    assert certificate["verification"]["gateway_traces"] == {"remaining": 0, "ok": True}
    assert certificate["counts"]["gateway_traces"] == 1
    assert certificate["subject_rows_through"]
    assert held_by("agent-1") == (0, 0, 1)  # the new one: made after the erasure ran


def test_a_session_known_only_to_the_gateway_is_erased(two_agents, team_admin, system_admin):
    erase_through_requests(team_admin, system_admin, {"namespace": "alpha", "session_id": "s-1"})
    assert not LearnedFact.objects.filter(session_id="s-1").exists()
    assert held_by("agent-1") == (0, 1, 1)  # its exchange outside the session stays


def test_a_subject_nobody_holds_is_still_refused(two_agents, team_admin):
    before = (LearnedFact.objects.count(), PendingExchange.objects.count())
    refused = team_admin.post(REQUESTS, {"namespace": "alpha", "agent_id": "agent-9",
                                         "reason": "ticket 8"})
    assert refused.status_code == 400
    assert "agent_id 'agent-9' matches nothing" in refused.json()["error"]["message"]
    assert (LearnedFact.objects.count(), PendingExchange.objects.count()) == before


def test_another_namespaces_admin_cannot_reach_them(two_agents, beta):
    admin_of_beta = make_caller(Role.ADMIN, beta, "admin-b")
    refused = admin_of_beta.post(REQUESTS, {"namespace": "alpha", "agent_id": "agent-1"})
    assert refused.status_code == 404
    assert held_by("agent-1") == (1, 1, 1)


def test_a_restore_brings_them_back_and_the_replay_takes_them_again(
        agent, two_agents, team_admin, system_admin, alpha, stored):
    """A backup taken before the erasure holds the agent's rows and a memory it no
    longer held when erased (deleted before); the ledger entry names neither, only the
    keyed hash of the agent's id, and the replay finds them by it."""
    erase_through_requests(team_admin, system_admin, {"namespace": "alpha", "agent_id": "agent-1"})
    entry = list(erasure_ledger.entries())[-1]
    assert "agent-1" not in str(entry) and entry["selector"]["agent_id"].startswith("hmac")
    # As restored from the older backup: the rows come back, as old as they were.
    teach(agent, FACT, session="s-1")
    teach(agent, "Remember that Ada lives in Lyon.", learn=False)
    trace_of("agent-1", alpha)
    back = stored("agent-1's note from before the erasure.")["id"]
    kept = two_agents.post("/api/v1/memories", {"content": "agent-2's note."}).json()["id"]
    before = timezone.now() - timedelta(days=1)
    LearnedFact.objects.update(first_seen_at=before)
    for model in (PendingExchange, GatewayTrace, Memory):
        model.objects.update(created_at=before)
    assert held_by("agent-1") == (1, 1, 1)
    # What the agent made after the erasure ran is not the erasure's (a line whose
    # erasure never committed must not take it).
    later = stored("agent-1's note after the erasure.")["id"]

    (done,) = ledger.replay([entry], after_commit=False)
    assert held_by("agent-1") == (0, 0, 0)
    assert held_by("agent-2") == (1, 0, 1)
    assert not Memory.objects.filter(pk=back).exists()
    assert Memory.objects.filter(pk__in=[kept, later]).count() == 2
    assert done.erased == 1
    assert any("1 in gateway_facts" in note and "1 in gateway_traces" in note
               for note in done.notes)
