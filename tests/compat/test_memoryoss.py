"""Seed 003's clients against the drop-in /v1/ routes: the request and response shapes
of its SDK (store, store/batch, recall, recall/batch, update, forget, export, memories,
forget/certified, auth/token), its error body, and MemoryWeb's roles and tenancy."""

from __future__ import annotations

import json

from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.memories.models import Memory
from apps.privacy.models import ErasureRequest


def _delete(caller, path, body=None):
    return caller.client.delete(path, body, format="json") if body is not None else \
        caller.client.delete(path)


def test_sdk_flow_store_recall_update_forget(alpha, agent, team_admin, system_admin):
    # connect(): POST /v1/auth/token {"api_key"} -> {"token"}; Bearer token afterwards.
    client = APIClient()
    token = client.post("/v1/auth/token", {"api_key": agent.raw}, format="json")
    assert token.status_code == 200 and token.json()["token"] == agent.raw
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['token']}")

    stored = client.post("/v1/store", {"content": "The deploy freeze starts on Friday",
                                       "tags": ["ops"], "agent": "agent-1", "session": "s-1",
                                       "memory_type": "episodic"}, format="json")
    assert stored.status_code == 200, stored.content
    assert set(stored.json()) >= {"id", "version"} and stored.json()["version"] == 1
    memory = Memory.objects.get(pk=stored.json()["id"])
    assert (memory.kind, memory.session_id, memory.agent_id) == ("episode", "s-1", "agent-1")

    batch = client.post("/v1/store/batch", {"memories": [
        {"content": "Staging runs on pluto", "tags": ["infra"]},
        {"content": "Alice prefers tabs over spaces", "memory_type": "preference"}]},
        format="json")
    assert batch.status_code == 200 and len(batch.json()["stored"]) == 2

    recalled = client.post("/v1/recall", {"query": "when does the deploy freeze start?",
                                          "limit": 2}, format="json")
    assert recalled.status_code == 200
    top = recalled.json()["memories"][0]
    assert top["memory"]["id"] == stored.json()["id"]
    assert top["memory"]["memory_type"] == "episodic" and top["memory"]["agent"] == "agent-1"
    assert top["memory"]["session"] == "s-1" and top["score"] > 0 and top["provenance"]
    assert len(recalled.json()["memories"]) <= 2

    batched = client.post("/v1/recall/batch", {"queries": [
        {"query": "deploy freeze"}, {"query": "which host is staging?", "tags": ["infra"]}]},
        format="json")
    assert batched.status_code == 200
    first, second = batched.json()["results"]
    assert first["memories"][0]["memory"]["content"].startswith("The deploy freeze")
    assert [m["memory"]["content"] for m in second["memories"]] == ["Staging runs on pluto"]

    # update: MemoryWeb's roles, so an agent gets 403 and a team admin edits.
    change = {"id": stored.json()["id"], "content": "The deploy freeze starts on Thursday",
              "tags": ["ops", "freeze"]}
    refused = client.patch("/v1/update", change, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("role 'agent' may not edit")  # SDK reads "error"
    updated = team_admin.patch("/v1/update", change)
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert Memory.objects.get(pk=stored.json()["id"]).tags == ["ops", "freeze"]

    # forget by ids: team admin; the SDK sends DELETE with a JSON body.
    assert _delete(agent, "/v1/forget", {"ids": [stored.json()["id"]]}).status_code == 403
    gone = _delete(team_admin, "/v1/forget", {"ids": [stored.json()["id"]]})
    assert gone.status_code == 200 and gone.json() == {"deleted": 1}
    assert not Memory.objects.filter(pk=stored.json()["id"]).exists()

    # forget by filter: a system admin's, like deleting an agent's memories.
    assert _delete(team_admin, "/v1/forget", {"tags": ["infra"]}).status_code == 403
    by_tag = _delete(system_admin, "/v1/forget", {"tags": ["infra"], "namespace": "alpha"})
    assert by_tag.status_code == 200 and by_tag.json() == {"deleted": 1}
    assert Memory.objects.filter(namespace=alpha).count() == 1


def test_auth_token_refuses_a_bad_key_without_saying_more(alpha, agent):
    client = APIClient()
    for body in ({"api_key": "mw_live_nothing"}, {"api_key": agent.raw + "x"}, {}):
        response = client.post("/v1/auth/token", body, format="json")
        assert response.status_code == 401
        assert response.json()["error"] == "invalid API key"


def test_every_route_needs_a_key(alpha, anonymous, agent):
    memory = agent.post("/v1/store", {"content": "kept"}).json()["id"]
    before = Memory.objects.count(), AuditEntry.objects.count()
    calls = [("post", "/v1/store", {"content": "x"}), ("post", "/v1/store/batch",
             {"memories": [{"content": "x"}]}), ("post", "/v1/recall", {"query": "x"}),
             ("post", "/v1/recall/batch", {"queries": [{"query": "x"}]}),
             ("patch", "/v1/update", {"id": memory, "content": "y"}),
             ("delete", "/v1/forget", {"ids": [memory]}), ("get", "/v1/export", None),
             ("get", "/v1/memories", None), ("delete", "/v1/forget/certified", {"ids": [memory]}),
             ("post", "/v1/consolidate", {})]
    for method, path, body in calls:
        send = getattr(anonymous.client, method)
        response = send(path, body, format="json") if body is not None else send(path)
        assert response.status_code == 401, path
        assert response.json()["code"] == "not_authenticated", path
    assert (Memory.objects.count(), AuditEntry.objects.count()) == before


def test_errors_are_seed_003_shaped_and_change_nothing(alpha, agent):
    before = Memory.objects.count()
    cases = [
        ({"content": "x", "agent": "someone-else"}, "agent"),
        ({"content": "x", "embedding": [0.1, 0.2]}, "embedding"),
        ({"content": "x", "zero_knowledge": True}, "zero_knowledge"),
        ({"content": "x", "memory_type": "dream"}, "memory_type"),
        ({"content": "x", "colour": "red"}, "colour"),
        ({"content": ""}, "content"),
    ]
    for body, field in cases:
        response = agent.post("/v1/store", body)
        assert response.status_code == 400, body
        assert isinstance(response.json()["error"], str) and response.json()["field"] == field
    batch = agent.post("/v1/store/batch", {"memories": [{"content": "fine"},
                                                        {"content": "x", "weights": {}}]})
    assert batch.status_code == 400 and batch.json()["field"] == "memories[1].weights"
    for body, field in [({"query": "x", "cursor": "abc"}, "cursor"),
                        ({"query": "x", "weights": {"vector": 1}}, "weights"),
                        ({"query": "x", "limit": 0}, "limit"),
                        ({"query": "x", "consistency": "sometimes"}, "consistency")]:
        response = agent.post("/v1/recall", body)
        assert response.status_code == 400 and response.json()["field"] == field, body
    too_many = agent.post("/v1/recall/batch", {"queries": [{"query": "x"}] * 11})
    assert too_many.status_code == 400 and too_many.json()["code"] == "too_many"
    assert Memory.objects.count() == before


def test_recall_limit_is_clamped_like_the_original(alpha, agent, settings):
    agent.post("/v1/store/batch", {"memories": [{"content": f"note number {i}"}
                                                for i in range(5)]})
    settings.MEMORYWEB_LIMITS = {**settings.MEMORYWEB_LIMITS, "max_k": 3}
    response = agent.post("/v1/recall", {"query": "note number", "limit": 1000})
    assert response.status_code == 200 and len(response.json()["memories"]) == 3


def test_recall_filters_map_onto_memoryweb_filters(alpha, agent):
    agent.post("/v1/store/batch", {"memories": [
        {"content": "red fox in the garden", "tags": ["animals"], "session": "a"},
        {"content": "red car in the garage", "tags": ["cars"], "session": "b"},
        {"content": "red paint on the fence", "tags": ["house"], "session": "b"}]})

    def found(**body):
        response = agent.post("/v1/recall", {"query": "red", "limit": 10, **body})
        assert response.status_code == 200, response.content
        return sorted(m["memory"]["content"].split()[1] for m in response.json()["memories"])

    assert found(tags=["animals", "cars"]) == ["car", "fox"]  # any of the tags
    assert found(session="b") == ["car", "paint"]
    assert found(before="2000-01-01T00:00:00Z") == []
    assert found(after="2000-01-01T00:00:00Z") == ["car", "fox", "paint"]


def test_forget_refuses_what_would_be_dangerous(alpha, agent, system_admin, team_admin):
    kept = agent.post("/v1/store", {"content": "kept safe"}).json()["id"]
    everything = _delete(system_admin, "/v1/forget", {"namespace": "alpha"})
    assert everything.status_code == 400  # memoryOSS deletes the namespace; not here
    assert "at least one filter" in everything.json()["error"]
    both = _delete(team_admin, "/v1/forget", {"ids": [kept], "agent": "agent-1"})
    assert both.status_code == 400 and both.json()["field"] == "ids"
    assert Memory.objects.filter(pk=kept).exists()


def test_forget_by_filter_has_a_ceiling(alpha, agent, system_admin, settings):
    agent.post("/v1/store/batch", {"memories": [{"content": f"bulk {i}"} for i in range(4)]})
    settings.MEMORYWEB_LIMITS = {**settings.MEMORYWEB_LIMITS, "max_filter_delete": 3}
    response = _delete(system_admin, "/v1/forget", {"agent": "agent-1", "namespace": "alpha"})
    assert response.status_code == 400 and response.json()["code"] == "too_many"
    assert Memory.objects.filter(namespace=alpha).count() == 4


def test_memories_export_and_certified_forget(alpha, agent, team_admin, system_admin, reader):
    agent.post("/v1/store", {"content": "Bob's phone number is 555-0100",
                             "session": "support-7"})
    agent.post("/v1/store", {"content": "The office closes at six", "session": "ops"})

    listed = reader.get("/v1/memories?session=support-7")
    assert listed.status_code == 200
    assert listed.json()["count"] == 1 and listed.json()["namespace"] == "alpha"
    assert listed.json()["memories"][0]["content"].startswith("Bob's phone")

    assert reader.get("/v1/export").status_code == 403
    exported = team_admin.get("/v1/export")
    assert exported.status_code == 200 and exported["Content-Type"] == "application/json"
    document = json.loads(b"".join(exported.streaming_content))
    assert document["namespace"] == "alpha" and document["count"] == 2
    assert {m["memory_type"] for m in document["memories"]} == {"semantic"}
    assert document["jsonl_manifest"]["counts"]["memory"] == 2
    assert AuditEntry.objects.filter(operation="export").count() == 1

    assert _delete(team_admin, "/v1/forget/certified", {"session": "support-7"}).status_code == 403
    erased = _delete(system_admin, "/v1/forget/certified",
                     {"session": "support-7", "namespace": "alpha"})
    assert erased.status_code == 200, erased.content
    body = erased.json()
    assert body["deleted"] == 1
    assert body["certificate"]["selector"] == {"namespace": "alpha", "session_id": "support-7"}
    assert ErasureRequest.objects.get(pk=body["erasure_request"]).state == "executed"
    assert reader.get("/v1/memories").json()["count"] == 1
    refused = _delete(system_admin, "/v1/forget/certified", {"tags": ["x"], "namespace": "alpha"})
    assert refused.status_code == 400 and refused.json()["field"] == "tags"


def test_tenants_stay_apart(alpha, beta, agent, outsider, team_admin):
    mine = agent.post("/v1/store", {"content": "alpha's secret recipe"}).json()["id"]
    assert outsider.post("/v1/recall", {"query": "secret recipe"}).json()["memories"] == []
    assert outsider.get("/v1/memories").json()["memories"] == []
    named = outsider.post("/v1/recall", {"query": "secret recipe", "namespace": "alpha"})
    assert named.status_code == 404
    assert _delete(outsider, "/v1/forget", {"ids": [mine]}).status_code in (403, 404)
    beta_admin_edit = outsider.patch("/v1/update", {"id": mine, "content": "stolen"})
    assert beta_admin_edit.status_code == 404
    assert Memory.objects.get(pk=mine).content == "alpha's secret recipe"


def test_consolidate_merges_similar_memories_for_admins_and_is_403_below(alpha, agent,
                                                                         team_admin):
    texts = ["Production deploys happen on Tuesday afternoons.",
             "Deployments to production happen every Tuesday afternoon.",
             "The API timeout is 30 seconds.", "The API timeout is 45 seconds."]
    ids = [agent.post("/v1/store", {"content": t}).json()["id"] for t in texts]
    assert agent.post("/v1/consolidate", {}).status_code == 403
    dry = team_admin.post("/v1/consolidate", {"dry_run": True, "threshold": 0.85,
                                              "agent": "agent-1", "memory_type": "semantic"})
    assert dry.status_code == 200, dry.json()
    assert dry.json()["merged"] == 0 and len(dry.json()["groups"]) == 1
    response = team_admin.post("/v1/consolidate", {"threshold": 0.85})  # the seed's call merges
    body = response.json()
    assert response.status_code == 200 and body["dry_run"] is False and body["merged"] == 1
    group = body["groups"][0]
    assert {group["kept"], *group["merged"]} == set(ids[:2]) and group["applied"] is True
    assert body["conflicts"] == [{"members": sorted(ids[2:]), "similarity":
                                  body["conflicts"][0]["similarity"], "differs_in": ["number"]}]
    listed = {m["id"] for m in agent.get("/v1/memories").json()["memories"]}
    assert group["kept"] in listed and not set(group["merged"]) & listed
    refused = team_admin.post("/v1/consolidate", {"threshold": 2})
    assert refused.status_code == 400 and refused.json()["field"] == "threshold"
    bad_tags = team_admin.post("/v1/consolidate", {"tags": [""]})
    assert bad_tags.status_code == 400 and bad_tags.json()["field"].startswith("tags")
    unknown = team_admin.post("/v1/consolidate", {"similarity": 0.9})
    assert unknown.status_code == 400 and unknown.json()["field"] == "similarity"


def test_odd_parameters_are_400s(alpha, agent, reader):
    for query in ("limit=%C2%B2", "offset=%C2%B2", "offset=99999999999999999999", "limit=0"):
        response = reader.get(f"/v1/memories?{query}")
        assert response.status_code == 400, query
    batch = agent.post("/v1/store/batch", {"memories": [{"content": "x", "namespace": ["a"]}]})
    assert batch.status_code == 400 and batch.json()["field"] == "memories[0].namespace"
    assert Memory.objects.count() == 0
