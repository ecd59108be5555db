"""Seed 000's clients against the drop-in routes at /cmm/: its documented curl examples
(with a key), its other routes, and the role table mapped onto MemoryWeb's roles."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEntry
from apps.compat.cmm import importance_from_cmm, importance_to_cmm
from apps.memories.models import ExternalId, Memory

RATE_LIMIT = "The API rate limit is 480 req/min (confirmed by load test)"


@pytest.fixture
def cmm_data(tmp_path):
    """A seed 000 data directory: memories 41-43 (two by agent-47) and entities."""
    memories = [
        {"id": 41, "gist": "Deploys happen on Tuesdays after the standup", "importance": 1.0,
         "metadata": {"agent_id": "agent-12", "session_id": "s-1"}, "timestamp": 1_700_000_000},
        {"id": 42, "gist": "The API rate limit is 300 req/min", "importance": 0.5,
         "metadata": {"agent_id": "agent-47", "session_id": "s-2"},
         "timestamp": "2024-03-01T10:00:00Z"},
        {"id": 43, "gist": "The staging database is called pluto", "importance": 3.0,
         "agent_id": "agent-47", "session_id": "s-2", "timestamp": "2024-03-02T10:00:00+00:00"},
    ]
    (tmp_path / "memories.json").write_text(json.dumps(memories, indent=2))
    (tmp_path / "entities.json").write_text(json.dumps({"API": [42], "pluto": [43],
                                                        "staging": [43]}))
    (tmp_path / "faiss.index").write_bytes(b"\x00not read")
    return tmp_path


@pytest.fixture
def imported(alpha, cmm_data):
    call_command("import_memories", "--namespace", "alpha", "--format", "cmm", str(cmm_data),
                 "--no-progress")
    return cmm_data


def test_the_documented_curl_examples_work_with_a_key(imported, team_admin, reader, agent,
                                                      system_admin):
    # curl http://localhost:7832/memory/42
    shown = reader.get("/cmm/memory/42")
    assert shown.status_code == 200, shown.content
    assert shown.json()["gist"] == "The API rate limit is 300 req/min"
    assert shown.json()["agent_id"] == "agent-47" and shown.json()["id"] == 42

    # curl -X PUT http://localhost:7832/memory/42 -d '{"gist": "...", "importance": 2.0}'
    edited = team_admin.put("/cmm/memory/42", {"gist": RATE_LIMIT, "importance": 2.0})
    assert edited.status_code == 200, edited.content
    assert edited.json()["gist"] == RATE_LIMIT and edited.json()["importance"] == 2.0
    assert edited.json()["version"] == 2
    memory = Memory.objects.get(content=RATE_LIMIT)
    assert memory.importance == pytest.approx(2 / 3)
    assert memory.agent_id == "agent-47"  # provenance kept by the edit
    assert reader.get("/cmm/memory/42").json()["gist"] == RATE_LIMIT

    # curl "http://localhost:7832/memories?agent_id=agent-47&limit=50"
    listed = reader.get("/cmm/memories?agent_id=agent-47&limit=50")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["memories"]] == [43, 42]  # newest first
    assert reader.get("/cmm/memories?limit=20").json()["count"] == 3

    # The recall finds the edited text (re-embedded and re-indexed).
    found = agent.post("/cmm/recall", {"query": "what is the rate limit?", "k": 1})
    assert found.status_code == 200
    assert found.json()["results"][0]["id"] == 42

    # curl -X DELETE http://localhost:7832/memories/agent/agent-47
    assert agent.delete("/cmm/memories/agent/agent-47").status_code == 403
    assert team_admin.delete("/cmm/memories/agent/agent-47").status_code == 403
    gone = system_admin.delete("/cmm/memories/agent/agent-47")
    assert gone.status_code == 200 and gone.json() == {"deleted": 2, "agent_id": "agent-47",
                                                       "namespaces": {"alpha": 2}}
    assert reader.get("/cmm/memory/42").status_code == 404
    assert reader.get("/cmm/memories?agent_id=agent-47&limit=50").json()["memories"] == []

    # curl -X DELETE http://localhost:7832/memory/42 (41 is the one left)
    assert reader.delete("/cmm/memory/41").status_code == 403
    assert team_admin.delete("/cmm/memory/41").json() == {"deleted": True, "id": 41}
    assert Memory.objects.filter(namespace__slug="alpha").count() == 0


@pytest.mark.parametrize("method, path, body", [
    ("get", "/cmm/memory/42", None),
    ("put", "/cmm/memory/42", {"gist": "overwritten", "importance": 2.0}),
    ("delete", "/cmm/memory/42", None),
    ("get", "/cmm/memories?agent_id=agent-47&limit=50", None),
    ("delete", "/cmm/memories/agent/agent-47", None),
    ("post", "/cmm/ingest", {"gist": "anonymous write"}),
    ("post", "/cmm/recall", {"query": "rate limit"}),
    ("post", "/cmm/ingest_and_recall", {"gist": "anonymous write"}),
    ("post", "/cmm/consolidate", {}),
    ("post", "/cmm/end_of_day", {}),
    ("post", "/cmm/merge", {}),
    ("post", "/cmm/save", {}),
    ("get", "/cmm/health", None),
])
def test_every_route_fails_without_a_key(imported, anonymous, method, path, body):
    before = Memory.objects.count(), AuditEntry.objects.count()
    send = getattr(anonymous.client, method)
    response = send(path, body, format="json") if body is not None else send(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Memory.objects.get(content__startswith="The API rate").content.endswith("300 req/min")
    assert (Memory.objects.count(), AuditEntry.objects.count()) == before


def test_another_tenant_never_reaches_alphas_ids(imported, outsider):
    assert outsider.get("/cmm/memory/42").status_code == 404
    assert outsider.put("/cmm/memory/42", {"gist": "x"}).status_code == 404
    assert outsider.get("/cmm/memories?agent_id=agent-47").json()["memories"] == []
    # beta's own numbering starts at 1, apart from alpha's.
    stored = outsider.post("/cmm/ingest", {"gist": "beta's first note"})
    assert stored.status_code == 201 and stored.json()["id"] == 1
    assert outsider.get("/cmm/memory/1").json()["gist"] == "beta's first note"
    assert outsider.get("/cmm/memory/42").status_code == 404


def test_ingest_numbers_new_memories_after_the_imported_ones(imported, agent, reader):
    stored = agent.post("/cmm/ingest", {"gist": "The on-call phone is in the blue drawer",
                                        "importance": 1.0, "agent_id": "agent-1",
                                        "metadata": {"session_id": "s-9", "source": "chat"}})
    assert stored.status_code == 201, stored.content
    row = stored.json()["memory"]
    assert stored.json()["id"] == 44 and row["id"] == 44
    assert row["session_id"] == "s-9" and row["metadata"]["source"] == "chat"
    assert row["importance"] == 1.0
    assert Memory.objects.get(pk=row["memoryweb_id"]).importance == 0.5
    again = agent.post("/cmm/ingest", {"gist": "The on-call phone is in the blue drawer"})
    assert again.status_code == 200 and again.json() == {**again.json(), "id": 44,
                                                        "duplicate": True}
    # A memory stored through the REST API gets the next number when first shown here.
    rest = agent.post("/api/v1/memories", {"content": "Lunch is at noon"}).json()
    assert reader.get(f"/cmm/memory/{rest['id']}").json()["id"] == 45
    assert reader.get("/cmm/memory/45").json()["memoryweb_id"] == rest["id"]


def test_ingest_refuses_another_agents_name_and_bad_input(imported, agent):
    before = Memory.objects.count()
    wrong = agent.post("/cmm/ingest", {"gist": "spoofed", "agent_id": "agent-47"})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "agent_id"
    assert "comes from the API key" in wrong.json()["error"]["message"]
    spoof = agent.post("/cmm/ingest", {"gist": "spoofed", "metadata": {"agent_id": "agent-47"}})
    assert spoof.status_code == 400
    for body, field in [({}, "gist"), ({"gist": "x", "importance": -1}, "importance"),
                        ({"gist": "x", "importance": "high"}, "importance"),
                        ({"gist": "x", "colour": "red"}, "colour"),
                        ({"gist": "x", "content": "y"}, "content"),
                        ({"gist": ""}, "content")]:
        response = agent.post("/cmm/ingest", body)
        assert response.status_code == 400, body
        assert response.json()["error"]["field"] == field, response.json()
    assert Memory.objects.count() == before


def test_ingest_and_recall_stores_then_finds_related(imported, agent):
    response = agent.post("/cmm/ingest_and_recall",
                          {"gist": "pluto is the staging database; prod is neptune", "k": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == 44 and body["memory"]["gist"].startswith("pluto is")
    assert body["results"][0]["id"] == 43  # the imported "staging database is called pluto"
    assert 44 not in [row["id"] for row in body["results"]]


def test_put_refuses_what_an_edit_cannot_change(imported, team_admin):
    for body in ({"agent_id": "agent-9"}, {"session_id": "s-9"}, {"importance": -2},
                 {"gist": 7}):
        response = team_admin.put("/cmm/memory/42", body)
        assert response.status_code == 400, body
    assert Memory.objects.get(content__endswith="300 req/min").version == 1
    assert team_admin.put("/cmm/memory/9999", {"gist": "x"}).status_code == 404
    assert team_admin.put("/cmm/memory/not-an-id", {"gist": "x"}).status_code == 404


def test_consolidate_merges_at_once_with_seed_numbers_and_undoes(alpha, callers):
    agent, admin = callers["agent"], callers["admin"]
    texts = ["Production deploys happen on Tuesday afternoons.",
             "Deployments to production happen every Tuesday afternoon.",
             "The API timeout is 30 seconds.", "The API timeout is 45 seconds."]
    numbers = [agent.post("/cmm/ingest", {"gist": t}).json()["id"] for t in texts]
    assert agent.post("/cmm/consolidate", {}).status_code == 403
    dry = admin.post("/cmm/consolidate", {"dry_run": True, "threshold": 0.85}).json()
    assert dry["merged"] == 0 and len(dry["groups"]) == 1
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    body = admin.post("/cmm/consolidate", {"threshold": 0.85, "agent_id": "agent-1"}).json()
    assert body["dry_run"] is False and body["merged"] == 1 and body["superseded"] == 1
    group = body["groups"][0]
    assert {group["kept"], *group["merged"]} == set(numbers[:2]) and group["applied"] is True
    assert group["gist"] in texts[:2]
    assert sorted(body["conflicts"][0]["ids"]) == sorted(numbers[2:])
    assert body["conflicts"][0]["differs_in"] == ["number"]
    listed = {m["id"] for m in agent.get("/cmm/memories?limit=50").json()["memories"]}
    assert group["kept"] in listed and not set(group["merged"]) & listed
    kept = next(i for i in group["memoryweb_ids"]
                if Memory.objects.filter(pk=i, superseded_by__isnull=True).exists())
    assert admin.post(f"/api/v1/memories/{kept}/unmerge").status_code == 200
    assert len(agent.get("/cmm/memories?limit=50").json()["memories"]) == 4
    assert admin.post("/cmm/consolidate", {"similarity": 1}).status_code == 400


def test_merge_moves_a_namespace_for_system_admins_only(imported, callers, beta):
    """Seed 000's /merge: system admin; the memories move with their ids, seed 000
    numbers are the target's own afterwards."""
    before = Memory.objects.count(), AuditEntry.objects.count()
    body = {"source": "alpha", "target": "beta"}
    for name in ("reader", "agent", "admin"):
        response = callers[name].post("/cmm/merge", body)
        assert response.status_code == 403, (name, response.content)
    assert (Memory.objects.count(), AuditEntry.objects.count()) == before
    system = callers["system"]
    dry = system.post("/cmm/merge", {**body, "dry_run": True})
    assert dry.status_code == 200 and dry.json()["memories"] == before[0]
    ids = set(Memory.objects.filter(namespace__slug="alpha").values_list("pk", flat=True))
    merged = system.post("/cmm/merge", body)
    assert merged.status_code == 200, merged.content
    assert merged.json()["state"] == "done" and merged.json()["moved"] == len(ids)
    assert set(Memory.objects.filter(namespace__slug="beta").values_list("pk", flat=True)) == ids
    assert not ExternalId.objects.filter(system="cmm", namespace__slug="alpha").exists()
    listed = system.get("/cmm/memories?namespace=beta&limit=50").json()["memories"]
    assert len(listed) == len(ids) and all(isinstance(row["id"], int) for row in listed)
    assert system.post("/cmm/merge", body).status_code == 409  # alpha is archived now


def test_save_and_health(imported, team_admin, agent):
    assert agent.post("/cmm/save", {}).status_code == 403
    saved = team_admin.post("/cmm/save", {})
    assert saved.status_code == 200 and saved.json()["saved"] is True
    assert agent.get("/cmm/health").json()["status"] == "ok"


def test_unknown_routes_under_the_prefix_answer_json(agent):
    response = agent.get("/cmm/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_importance_scale_round_trips():
    for weight in (0.0, 0.25, 1.0, 2.0, 3.5, 10.0):
        assert importance_to_cmm(importance_from_cmm(weight)) == pytest.approx(weight)
    assert importance_from_cmm(1.0) == 0.5  # ordinary is ordinary on both scales
    assert importance_from_cmm(0.5) < importance_from_cmm(2.0) < 1.0


def test_prefixes_are_settings_and_empty_mounts_at_the_root(settings, imported, reader):
    from django.urls import clear_url_caches

    import memoryweb.urls

    settings.MEMORYWEB_CMM_PREFIX = ""
    clear_url_caches()
    import importlib

    importlib.reload(memoryweb.urls)
    try:
        assert reader.get("/memory/42").json()["gist"].endswith("300 req/min")
        assert reader.get("/memories?agent_id=agent-47&limit=50").json()["count"] == 2
        assert reader.get("/health").json()["status"] == "ok"  # MemoryWeb's own probe wins
    finally:
        settings.MEMORYWEB_CMM_PREFIX = "cmm/"
        importlib.reload(memoryweb.urls)
        clear_url_caches()


def test_cmm_import_keeps_agent_session_time_importance_entities(imported):
    rows = {e.external_id: e.memory for e in ExternalId.objects.filter(system="cmm")
            .select_related("memory")}
    assert set(rows) == {"41", "42", "43"}
    m41, m43 = rows["41"], rows["43"]
    assert (m41.agent_id, m41.session_id) == ("agent-12", "s-1")
    assert m41.created_at.timestamp() == 1_700_000_000
    assert m41.importance == 0.5 and m43.importance == 0.75
    assert m43.metadata["entities"] == ["pluto", "staging"]
    assert "agent_id" not in m41.metadata  # moved to the field, not duplicated


def test_cmm_reimport_creates_nothing_and_bad_records_are_reported(imported, tmp_path):
    import io

    out, err = io.StringIO(), io.StringIO()
    call_command("import_memories", "--namespace", "alpha", "--format", "cmm", str(imported),
                 "--no-progress", stdout=out, stderr=err)
    assert "0 imported, 3 already there, 0 problems" in out.getvalue()
    assert Memory.objects.count() == 3
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    (keyed / "memories.json").write_text(json.dumps({"memories": {
        "7": {"gist": "Keyed by id is read too", "importance": 1},
        "8": {"gist": "Bad importance", "importance": "very"},
        "x9": {"gist": "Bad id"},
        "10": {"importance": 1},
        "11": {"gist": "Bad time", "timestamp": "last tuesday"}}}, indent=1))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        call_command("import_memories", "--namespace", "alpha", "--format", "cmm", str(keyed),
                     "--no-progress", stdout=out, stderr=err)
    assert "1 imported, 0 already there, 4 problems" in out.getvalue()
    text = (keyed / "memories.json").read_text().splitlines()
    for memory_id, words in [("8", "importance must be a number"), ("x9", "not an integer id"),
                             ("10", "no text in 'gist'"), ("11", "neither ISO 8601")]:
        line = next(n for n, row in enumerate(text, 1) if f'"{memory_id}":' in row)
        assert f"memories.json: line {line}: " in err.getvalue() and words in err.getvalue()
    assert ExternalId.objects.filter(system="cmm", external_id="7").exists()


def test_erasure_takes_the_seed_000_ids_with_the_memories(imported, system_admin, reader):
    erased = system_admin.client.delete("/api/v1/forget/certified?namespace=alpha&agent_id=agent-47")
    assert erased.status_code == 200, erased.content
    checks = erased.json()["verification"]
    assert checks["external_ids"] == {"remaining": 0, "ok": True}
    assert set(ExternalId.objects.values_list("external_id", flat=True)) == {"41"}
    assert reader.get("/cmm/memory/42").status_code == 404


def test_the_curl_examples_work_as_curl_sends_them(imported, team_admin, reader):
    """`curl -d '{...}'` labels its JSON a form: seed 000 read it as JSON, so do we."""
    form = "application/x-www-form-urlencoded"
    body = json.dumps({"gist": RATE_LIMIT, "importance": 2.0})
    edited = team_admin.client.generic("PUT", "/cmm/memory/42", body, content_type=form)
    assert edited.status_code == 200, edited.content
    assert reader.get("/cmm/memory/42").json()["gist"] == RATE_LIMIT
    broken = team_admin.client.generic("PUT", "/cmm/memory/42", "gist=x", content_type=form)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "parse_error"


def test_a_deleted_memorys_number_is_never_handed_out_again(alpha, agent, team_admin, reader):
    ids = [agent.post("/cmm/ingest", {"gist": f"note {n}"}).json()["id"] for n in range(3)]
    assert ids == [1, 2, 3]
    assert team_admin.delete("/cmm/memory/3").status_code == 200
    assert agent.post("/cmm/ingest", {"gist": "note 4"}).json()["id"] == 4
    assert reader.get("/cmm/memory/3").status_code == 404  # a retried DELETE /memory/3 is safe


def test_an_import_cannot_take_over_a_number_a_route_handed_out(alpha, agent, tmp_path):
    import io

    for n in range(3):
        agent.post("/cmm/ingest", {"gist": f"live note {n}"})
    (tmp_path / "memories.json").write_text(json.dumps(
        [{"id": 2, "gist": "seed two"}, {"id": 50, "gist": "seed fifty"},
         {"id": 50, "gist": "fifty again"}], indent=1))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        call_command("import_memories", "--namespace", "alpha", "--format", "cmm",
                     str(tmp_path), "--no-progress", stdout=out, stderr=err)
    assert "1 imported, 0 already there, 2 problems" in out.getvalue()
    assert "cmm id 2 already names another memory" in err.getvalue()
    assert "cmm id 50 was already read at line" in err.getvalue()
    assert agent.get("/cmm/memory/2").json()["gist"] == "live note 1"
    assert agent.get("/cmm/memory/50").json()["gist"] == "seed fifty"
    # Numbers handed out next start above the imported ones.
    assert agent.post("/cmm/ingest", {"gist": "after the import"}).json()["id"] == 51


@pytest.mark.parametrize("path", ["/cmm/memory/%C2%B2", "/cmm/memory/--5", "/cmm/memory/-5",
                                  "/cmm/memory/99999999999999999999", "/cmm/memory/%20"])
def test_odd_ids_are_404s(imported, reader, path):
    assert reader.get(path).status_code == 404


def test_odd_numbers_are_400s(imported, reader, agent):
    assert reader.get("/cmm/memories?limit=%C2%B2").status_code == 400
    assert reader.get("/cmm/memories?limit=0").status_code == 400
    huge = agent.post("/cmm/ingest", {"gist": "x"}, HTTP_CONTENT_TYPE="application/json")
    assert huge.status_code == 201
    body = '{"gist": "y", "importance": 1' + "1" * 400 + "}"
    response = agent.client.generic("POST", "/cmm/ingest", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "importance"


def test_what_a_get_shows_can_be_put_back_unchanged(imported, team_admin):
    shown = team_admin.get("/cmm/memory/42").json()
    put = team_admin.put("/cmm/memory/42", {k: shown[k] for k in ("gist", "importance",
                                                                  "metadata", "tags", "kind")})
    assert put.status_code == 200, put.content
    assert put.json()["version"] == 1  # nothing changed, no new version
    Memory.objects.filter(content__endswith="300 req/min").update(importance=0.3)
    shown = team_admin.get("/cmm/memory/42").json()
    again = team_admin.put("/cmm/memory/42", {"importance": shown["importance"],
                                              "agent_id": "agent-47"})
    assert again.json()["version"] == 1
    assert Memory.objects.get(content__endswith="300 req/min").importance == 0.3
    moved = team_admin.put("/cmm/memory/42", {"metadata": {**shown["metadata"],
                                                           "session_id": "other"}})
    assert moved.status_code == 400 and moved.json()["error"]["field"] == "metadata.session_id"


def test_system_keys_reach_save_and_merge_without_a_namespace(system_admin, agent, alpha):
    assert system_admin.post("/cmm/save", {}).status_code == 200
    merged = system_admin.post("/cmm/merge", {})
    assert merged.status_code == 400 and merged.json()["error"]["field"] == "source"
    assert agent.post("/cmm/merge", {}).status_code == 403


def test_ingest_and_recall_answers_200_for_identical_content(imported, agent):
    first = agent.post("/cmm/ingest_and_recall", {"gist": "A brand new fact"})
    again = agent.post("/cmm/ingest_and_recall", {"gist": "A brand new fact"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
