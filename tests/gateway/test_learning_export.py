"""A GDPR export carries what the gateway learned (apps/gateway/learning_stores.py through
``Store.export``): quarantined facts and queued exchanges of the namespace, and for a
subject only those of the agents and sessions the selection takes whole — as erasure
removes them, never another person's."""

from __future__ import annotations

import json

import pytest

from apps.core.roles import Role
from apps.gateway import learning
from apps.gateway.models import LearnedFact, PendingExchange
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller

#: The learner's functions tidy the thread's connections, as on the server's threads.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_learner_thread(monkeypatch):
    monkeypatch.setattr(learning, "wake", lambda: None)


def _teach(caller, text: str, session: str) -> None:
    principal = Principal.for_key(caller.key)
    assert learning.enqueue(learning.Taught(principal, caller.key.namespace, session), "chat",
                            text, "Noted.")
    learning.process_due()


def _export(admin, query: str = "") -> tuple[list[dict], dict]:
    response = admin.get(f"/api/v1/export{query}")
    assert response.status_code == 200, response.content
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    return lines[:-1], lines[-1]


def test_exports_carry_the_learned_facts_of_the_namespace_and_of_a_whole_subject(
        alpha, agent, team_admin):
    other = make_caller(Role.AGENT, alpha, "agent-2")
    # Each agent has a memory in its own session, and taught a fact there.
    agent.post("/api/v1/memories", {"content": "Planning notes.", "session_id": "s-one"})
    other.post("/api/v1/memories", {"content": "Other notes.", "session_id": "s-two"})
    _teach(agent, "Remember that the staging database is on host db-2.", "s-one")
    _teach(other, "Remember that the billing service runs on host b-7.", "s-two")
    PendingExchange.objects.create(  # one still waiting for its extraction
        namespace=alpha, api_key=agent.key, agent_id="agent-1", session_id="s-one", api="chat",
        user_text="We deploy on Fridays.", assistant_text="Noted.")
    assert LearnedFact.objects.count() == 2

    lines, manifest = _export(team_admin)
    facts = {line["text"]: line for line in lines if line["type"] == "gateway_facts"}
    assert set(facts) == {"The staging database is on host db-2.",
                          "The billing service runs on host b-7."}
    assert facts["The staging database is on host db-2."]["state"] == "quarantined"
    assert [line["user_text"] for line in lines if line["type"] == "gateway_exchanges"] == [
        "We deploy on Fridays."]
    assert manifest["counts"]["gateway_facts"] == 2
    assert manifest["counts"]["gateway_exchanges"] == 1

    # A subject export of agent-1 carries agent-1's fact and exchange, not agent-2's.
    lines, manifest = _export(team_admin, "?agent_id=agent-1")
    assert [line["text"] for line in lines if line["type"] == "gateway_facts"] == [
        "The staging database is on host db-2."]
    assert len([line for line in lines if line["type"] == "gateway_exchanges"]) == 1
    assert manifest["counts"]["gateway_facts"] == 1


def test_exports_carry_the_request_traces_naming_the_selection(alpha, agent, team_admin):
    from apps.gateway.models import GatewayTrace

    memory = agent.post("/api/v1/memories", {"content": "Planning notes."}).json()
    other = make_caller(Role.AGENT, alpha, "agent-2")
    other.post("/api/v1/memories", {"content": "Other notes."})
    GatewayTrace.objects.create(namespace=alpha, level="content", api="chat", mode="full",
                                agent_id="agent-2", injected=1, memory_ids=[memory["id"]],
                                query="what are the plans?")
    GatewayTrace.objects.create(namespace=alpha, level="content", api="chat", mode="full",
                                agent_id="agent-2", query="something else entirely")
    lines, manifest = _export(team_admin)
    assert manifest["counts"]["gateway_traces"] == 2
    # agent-1's export: the trace that injected its memory, not agent-2's other query.
    lines, _ = _export(team_admin, "?agent_id=agent-1")
    assert [line["query"] for line in lines if line["type"] == "gateway_traces"] == [
        "what are the plans?"]


def test_a_subject_export_never_carries_another_persons_facts_through_a_shared_agent(
        alpha, agent, team_admin):
    # One agent key serves two people: Alice's memory, and a fact Bob stated (quarantined).
    agent.post("/api/v1/memories", {"content": "Alice prefers tea.",
                                    "metadata": {"subject_id": "alice"}})
    _teach(agent, "Remember that Bob's locker code is on the blue card.", "s-bob")
    assert LearnedFact.objects.count() == 1
    lines, manifest = _export(team_admin, "?subject_id=alice")
    assert [line for line in lines if line["type"].startswith("gateway_")] == []
    assert "gateway_facts" not in manifest["counts"]
    # The agent's own export (it taught it) and the session's carry it.
    for query in ("?agent_id=agent-1", "?session_id=s-bob"):
        lines, _ = _export(team_admin, query)
        assert [line["text"] for line in lines if line["type"] == "gateway_facts"] == [
            "Bob's locker code is on the blue card."]
