"""GET /api/v1/audit: team admins read their namespace's entries, system admins all."""

from __future__ import annotations

from apps.audit.models import AuditEntry


def _seqs(body) -> list[int]:
    return [row["seq"] for row in body["results"]]


def test_team_admin_reads_only_their_namespace(team_admin, agent, outsider):
    agent.post("/api/v1/memories", {"content": "alpha note"})
    outsider.post("/api/v1/memories", {"content": "beta note"})
    body = team_admin.get("/api/v1/audit").json()  # a namespace key needs no ?namespace
    alpha_id = team_admin.key.namespace_id
    assert body["results"] and {row["namespace"] for row in body["results"]} == {"alpha"}
    assert _seqs(body) == list(AuditEntry.objects.filter(namespace_id=alpha_id)
                               .order_by("seq").values_list("seq", flat=True))
    assert team_admin.get("/api/v1/audit?namespace=beta").status_code == 404
    row = body["results"][-1]
    assert set(row) == {"seq", "created_at", "actor", "agent_id", "namespace", "operation",
                        "record_ids", "summary", "request_id", "prev_hash", "entry_hash"}


def test_lower_roles_cannot_read_the_audit_log(reader, agent):
    assert reader.get("/api/v1/audit").status_code == 403
    assert agent.get("/api/v1/audit").status_code == 403


def test_system_admin_reads_everything_and_pages_by_sequence(system_admin, agent, outsider):
    for i in range(3):
        agent.post("/api/v1/memories", {"content": f"alpha {i}"})
    outsider.post("/api/v1/memories", {"content": "beta"})
    everything = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    first = system_admin.get("/api/v1/audit?limit=2").json()
    assert _seqs(first) == everything[:2] and first["next_after_seq"] == everything[1]
    rest = system_admin.get(f"/api/v1/audit?limit=1000&after_seq={first['next_after_seq']}").json()
    assert _seqs(rest) == everything[2:] and rest["next_after_seq"] is None
    only_beta = system_admin.get("/api/v1/audit?namespace=beta").json()
    assert {row["namespace"] for row in only_beta["results"]} == {"beta"}


def test_filters(team_admin, agent):
    memory = agent.post("/api/v1/memories", {"content": "filtered"}).json()["id"]
    team_admin.patch(f"/api/v1/memories/{memory}", {"importance": 0.1})
    team_admin.post("/api/v1/namespaces/alpha/keys", {"role": "reader", "agent_id": "r"})
    by_record = team_admin.get(f"/api/v1/audit?record_id={memory}").json()["results"]
    assert [row["operation"] for row in by_record] == ["memory.create", "memory.update"]
    keys = team_admin.get("/api/v1/audit?operation=key.").json()["results"]
    assert keys and all(row["operation"].startswith("key.") for row in keys)
    mine = team_admin.get(f"/api/v1/audit?actor=key:{agent.key.prefix}").json()["results"]
    assert [row["operation"] for row in mine] == ["memory.create"]


def test_bad_audit_queries_are_400(team_admin):
    for query, field in (("limit=0", "limit"), ("after_seq=-1", "after_seq"),
                         ("limit=abc", "limit"), ("colour=red", "colour")):
        response = team_admin.get(f"/api/v1/audit?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["field"] == field
