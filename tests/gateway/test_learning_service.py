"""The gateway's learning as a service, in this process: the queue, quarantine, promotion
after a second sighting, duplicates that strengthen, the review (approve, edit, reject),
the model extractor's failure (retried later, nothing half-stored), erasure and tenancy.
End to end through the SDKs and Daphne: tests/gateway/test_learning.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.audit.models import AuditEntry
from apps.core.errors import NotFound, PermissionDenied
from apps.core.roles import Role
from apps.gateway import learning
from apps.gateway.models import FactState, LearnedFact, PendingExchange
from apps.memories.models import Memory
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller
from tests.helpers.erasure import erase_through_requests
from tests.helpers.fake_llm import Failure, FakeLLM

#: The learner's functions tidy the thread's connections, as on the server's threads.
pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Remember that the staging database is on host db-2."


@pytest.fixture(autouse=True)
def no_learner_thread(monkeypatch):
    """The test runs the learner's passes itself (``process_due``)."""
    monkeypatch.setattr(learning, "wake", lambda: None)


def counted(name: str, **labels: str) -> float:
    """A gateway counter's value in this process (0 before a labelled one's first count);
    the registry is the process's: compare before and after."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


PROMOTED = "memoryweb_gateway_facts_promoted_total"


def teach(caller, text: str, answer: str = "Noted.", session: str = "") -> None:
    principal = Principal.for_key(caller.key)
    namespace = caller.key.namespace
    assert learning.enqueue(learning.Taught(principal, namespace, session), "chat", text, answer)
    learning.process_due()


def test_a_fact_is_quarantined_then_promoted_when_stated_again(agent, alpha):
    seen = counted(PROMOTED, how="seen")
    teach(agent, FACT)
    (fact,) = LearnedFact.objects.all()
    assert (fact.state, fact.seen_count, fact.confidence, fact.agent_id) == (
        FactState.QUARANTINED, 1, learning.QUARANTINE_CONFIDENCE, "agent-1")
    assert fact.text == "The staging database is on host db-2."
    assert not Memory.objects.exists()  # quarantine is no memory: nothing to recall
    assert not PendingExchange.objects.exists()  # the exchange is gone once learned

    teach(agent, "note: the staging database is on host db-2")  # a later exchange
    fact.refresh_from_db()
    assert fact.state == FactState.PROMOTED and fact.seen_count == 2
    assert counted(PROMOTED, how="seen") == seen + 1
    memory = Memory.objects.get(pk=fact.memory_id)
    assert memory.content == "The staging database is on host db-2."
    assert (memory.agent_id, memory.confidence, memory.metadata["source"]) == (
        "agent-1", learning.PROMOTED_CONFIDENCE, "gateway")
    assert memory.tags == ["learned"]
    assert any(str(memory.pk) in entry.record_ids for entry in AuditEntry.objects.filter(
        operation="memory.create", actor=f"key:{agent.key.prefix}"))


def test_an_exchange_without_a_fact_queues_nothing(agent, alpha):
    taught = learning.Taught(Principal.for_key(agent.key), alpha)
    assert learning.enqueue(taught, "chat", "Where is the deploy script?", "In tools/.") is None
    assert not PendingExchange.objects.exists()


def test_one_exchange_is_one_sighting(agent, alpha):
    teach(agent, f"{FACT} {FACT}")
    assert LearnedFact.objects.get().seen_count == 1


def test_a_duplicate_of_a_memory_strengthens_it(agent, alpha, stored):
    memory_id = stored("We use pnpm, not npm, in this repo.")["id"]
    before = Memory.objects.get(pk=memory_id).access_count
    strengthened = counted("memoryweb_gateway_memories_strengthened_total")
    teach(agent, "we use pnpm, not npm, in this repo")
    assert counted("memoryweb_gateway_memories_strengthened_total") == strengthened + 1
    assert not LearnedFact.objects.exists()
    memory = Memory.objects.get(pk=memory_id)
    assert memory.access_count == before + 1 and memory.last_recalled_at is not None
    assert any(memory_id in entry.record_ids
               for entry in AuditEntry.objects.filter(operation="gateway.strengthen"))
    assert Memory.objects.count() == 1


def test_approve_edit_and_reject(agent, team_admin, alpha):
    teach(agent, FACT)
    teach(agent, "Remember that we deploy on Tuesdays.")
    first, second = LearnedFact.objects.order_by("first_seen_at")
    admin = Principal.for_key(team_admin.key)
    approvals = counted(PROMOTED, how="approved")
    edited = learning.edit(admin, first, "The staging DB is on db-2 (password=hunter22).")
    assert edited.text == "The staging DB is on db-2 (password=[REDACTED:credential])."
    approved = learning.approve(admin, first.pk, text="Staging DB: host db-2.")
    assert approved.state == FactState.PROMOTED and approved.decided_by == admin.label
    memory = Memory.objects.get(pk=approved.memory_id)
    assert memory.content == "Staging DB: host db-2." and memory.agent_id == "agent-1"
    assert counted(PROMOTED, how="approved") == approvals + 1
    rejected = learning.reject(admin, second)
    assert rejected.state == FactState.REJECTED
    teach(agent, "Remember that we deploy on Tuesdays.")  # seen again: stays rejected
    second.refresh_from_db()
    assert second.state == FactState.REJECTED and Memory.objects.count() == 1
    assert [f.pk for f in learning.quarantined(admin)] == []
    assert {e.operation for e in AuditEntry.objects.filter(operation__startswith="gateway.fact")} \
        == {"gateway.fact.edit", "gateway.fact.approve", "gateway.fact.reject"}


def test_the_review_is_for_team_admins_of_the_namespace(agent, outsider, alpha):
    teach(agent, FACT)
    fact = LearnedFact.objects.get()
    with pytest.raises(PermissionDenied):
        learning.approve(Principal.for_key(agent.key), fact)
    with pytest.raises(NotFound):  # another tenant's fact does not exist for them
        learning.reject(Principal.for_key(outsider.key), fact.pk)
    with pytest.raises(NotFound):
        learning.approve(Principal.for_key(agent.key), "not-a-uuid")
    assert LearnedFact.objects.get().state == FactState.QUARANTINED


def test_facts_of_one_namespace_never_meet_another(agent, outsider, alpha, beta):
    beta_agent = make_caller(Role.AGENT, beta, "agent-b")
    teach(agent, FACT)
    teach(beta_agent, FACT)  # the same words in beta: a fact of its own, not a sighting
    assert sorted(LearnedFact.objects.values_list("namespace__slug", "seen_count")) == [
        ("alpha", 1), ("beta", 1)]
    assert not Memory.objects.exists()


def test_a_revoked_keys_exchange_is_not_learned(agent, alpha):
    principal = Principal.for_key(agent.key)
    learning.enqueue(learning.Taught(principal, alpha), "chat", FACT, "")
    agent.key.revoked_at = timezone.now()
    agent.key.save()
    learning.process_due()
    assert not PendingExchange.objects.exists() and not LearnedFact.objects.exists()


@pytest.mark.processes  # the fake LLM API: a server, if in a thread
def test_the_model_extractor_failing_leaves_the_exchange_for_later(agent, alpha, settings,
                                                                   tmp_path):
    secret = "postgres://app:Sup3r-Secret-pw@db.internal/app"
    (tmp_path / "extractor.key").write_text("sk-extract-Zz9\n")
    with FakeLLM() as llm:
        settings.MEMORYWEB_GATEWAY_EXTRACTOR = "openai"
        settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL = llm.openai_url
        settings.MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE = str(tmp_path / "extractor.key")
        llm.failures["/v1/chat/completions"] = [Failure(status=500, body={"error": {}})]
        failures = counted("memoryweb_gateway_learn_failures_total", stage="extract")
        learning.enqueue(learning.Taught(Principal.for_key(agent.key), alpha), "chat",
                         f"Our database URL is {secret}; we use PostgreSQL 16.", "Noted.")
        assert learning.process_due() == 0
        row = PendingExchange.objects.get()
        assert row.attempts == 1 and row.next_attempt_at > timezone.now() and row.facts is None
        assert "500" in row.last_error and not LearnedFact.objects.exists()
        assert learning.process_due() == 0  # not due yet: the upstream is not asked again
        assert len(llm.requests) == 1
        assert counted("memoryweb_gateway_learn_failures_total", stage="extract") == failures + 1

        PendingExchange.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        llm.failures["/v1/chat/completions"] = [Failure(reply=json.dumps(
            {"facts": ["The app database is PostgreSQL 16 on db.internal."]}))]
        assert learning.process_due() == 1
        assert not PendingExchange.objects.exists()
        assert counted("memoryweb_gateway_learn_failures_total", stage="extract") == failures + 1
        assert LearnedFact.objects.get().text == "The app database is PostgreSQL 16 on db.internal."
        for request in llm.requests:  # both attempts: the secret never left
            assert b"Sup3r-Secret-pw" not in request["raw"]
            assert b"[REDACTED:url_credentials]" in request["raw"]


def test_a_failure_applying_the_facts_is_counted_and_retried_later(agent, alpha, monkeypatch):
    failures = counted("memoryweb_gateway_learn_failures_total", stage="apply")
    learning.enqueue(learning.Taught(Principal.for_key(agent.key), alpha), "chat", FACT, "")

    def down(*args):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(learning, "_apply", down)
        with pytest.raises(RuntimeError):
            learning.process_due()
    assert counted("memoryweb_gateway_learn_failures_total", stage="apply") == failures + 1
    row = PendingExchange.objects.get()
    assert (row.attempts, row.applied, row.facts) == (1, 0, ["The staging database is on host db-2."])
    assert row.next_attempt_at > timezone.now() and "RuntimeError" in row.last_error
    assert not LearnedFact.objects.exists()

    PendingExchange.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert learning.process_due() == 1  # the facts kept from the first try are applied
    assert LearnedFact.objects.get().text == "The staging database is on host db-2."
    assert counted("memoryweb_gateway_learn_failures_total", stage="apply") == failures + 1


def test_the_queue_holds_only_redacted_text(agent, alpha):
    key = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    learning.enqueue(learning.Taught(Principal.for_key(agent.key), alpha), "chat",
                     f"Remember that the deploy key is {key}.", f"I will use {key}.")
    row = PendingExchange.objects.get()
    assert key not in row.user_text and key not in row.assistant_text
    learning.process_due()
    assert key not in LearnedFact.objects.get().text


def test_erasure_of_an_agent_reaches_its_facts_and_queue(agent, team_admin, system_admin,
                                                         alpha, stored):
    other = make_caller(Role.AGENT, alpha, "agent-2")
    stored("Ada's phone number is 555-0100.")  # agent-1 has a memory: it can be erased
    teach(agent, FACT)
    teach(other, "Remember that we deploy on Tuesdays.")
    learning.enqueue(learning.Taught(Principal.for_key(agent.key), alpha), "chat",
                     "Remember that Ada lives in Lyon.", "")  # still queued
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "agent_id": "agent-1"})
    assert certificate["verification"]["gateway_facts"] == {"remaining": 0, "ok": True}
    assert certificate["verification"]["gateway_exchanges"] == {"remaining": 0, "ok": True}
    assert list(LearnedFact.objects.values_list("agent_id", flat=True)) == ["agent-2"]
    assert not PendingExchange.objects.exists()


def test_erasing_a_promoted_memory_erases_its_fact(agent, team_admin, system_admin, alpha):
    teach(agent, FACT)
    teach(agent, FACT)
    fact = LearnedFact.objects.get()
    assert fact.state == FactState.PROMOTED
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [str(fact.memory_id)]})
    assert certificate["verification"]["gateway_facts"]["ok"] is True
    assert not LearnedFact.objects.exists()


def test_stats_counts_the_learning_stores(agent, alpha):
    import io

    from django.core.management import call_command

    teach(agent, FACT)
    learning.enqueue(learning.Taught(Principal.for_key(agent.key), alpha), "chat",
                     "Remember that we deploy on Tuesdays.", "")
    out = io.StringIO()
    call_command("stats", "--json", "--no-vectors", stdout=out)
    (row,) = [r for r in json.loads(out.getvalue())["namespaces"] if r["slug"] == "alpha"]
    assert row["stores"]["gateway_facts"] == 1 and row["stores"]["gateway_exchanges"] == 1
