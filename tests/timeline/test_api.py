"""The timeline's REST routes: browse by level and range (paginated like memories), open a
node (children and grips), expand a grip (its source and its conversation around it);
bad parameters are 400s naming the field; another tenant's nodes and grips are 404s."""

from __future__ import annotations

import pytest

from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode
from tests.timeline.conftest import store


@pytest.fixture
def built(alpha, history):
    assert build(alpha).ok
    return history


def _grip_of(memory_id: str, level: str = "segment") -> Grip:
    return Grip.objects.filter(memory_id=memory_id, node__level=level).first()


def test_browse_a_level_over_a_range_paginated(built, reader):
    page = reader.get("/api/v1/timeline?level=segment&limit=2")
    assert page.status_code == 200
    body = page.json()
    assert body["count"] == 6 and len(body["results"]) == 2 and body["next"]
    first = body["results"][0]
    assert set(first) >= {"id", "level", "start", "end", "summary", "source_count", "parent",
                          "agent_id", "session_id", "status", "memory_id"}
    assert (first["level"], first["start"], first["session_id"]) == ("segment",
                                                                      "2024-01-30T09:00:00Z", "s1")
    assert first["summary"].startswith("Dana moved the launch review to Friday.")
    rest = reader.get("/api/v1/timeline?level=segment&limit=2&offset=4").json()
    assert [r["session_id"] for r in rest["results"]] == ["s4", ""] and rest["next"] is None

    days = reader.get("/api/v1/timeline").json()["results"]  # level defaults to day
    assert [d["start"] for d in days] == ["2024-01-30T00:00:00Z", "2024-01-31T00:00:00Z",
                                          "2024-02-02T00:00:00Z"]
    one = reader.get("/api/v1/timeline?level=day&from=2024-01-31&to=2024-01-31").json()
    assert [d["start"] for d in one["results"]] == ["2024-01-31T00:00:00Z"]
    since = reader.get("/api/v1/timeline?level=month&from=2024-02-01T00:00:00Z").json()
    assert [m["start"] for m in since["results"]] == ["2024-02-01T00:00:00Z"]
    weeks = reader.get("/api/v1/timeline?level=week&to=2024-01-30").json()["results"]
    assert weeks[0]["end"] == "2024-02-05T00:00:00Z" and weeks[0]["source_count"] == 10
    assert reader.get("/api/v1/timeline?level=year&from=2025-01-01").json()["count"] == 0


def test_open_a_node_with_its_children_and_grips(built, reader):
    year = RollupNode.objects.get(level="year")
    body = reader.get(f"/api/v1/timeline/{year.pk}").json()
    assert body["id"] == str(year.pk) and body["parent"] is None
    assert [child["level"] for child in body["children"]] == ["month", "month"]
    assert {g["memory_id"] for g in body["grips"]} == set(built.values())
    grip = next(g for g in body["grips"] if g["memory_id"] == built["date"])
    assert set(grip) == {"id", "node", "part", "text", "excerpt", "memory_id", "occurred_at",
                         "session_id"}
    assert grip["excerpt"] == "The Berlin offsite is on March 3."
    assert grip["occurred_at"] == "2024-01-31T14:00:00Z" and grip["session_id"] == "s3"
    assert grip["excerpt"] in body["summary"].split("\n")[grip["part"]]

    day = RollupNode.objects.get(level="day", start__date="2024-01-30")
    children = reader.get(f"/api/v1/timeline/{day.pk}").json()["children"]
    assert [(c["session_id"], c["start"]) for c in children] == [
        ("s1", "2024-01-30T09:00:00Z"), ("s2", "2024-01-30T09:02:00Z"),
        ("s1", "2024-01-30T11:00:00Z")]


def test_expand_a_grip_shows_its_session_in_conversation_order(built, reader, agent):
    store(agent, {"other": ("s2", "2024-01-30T09:06:00Z", "Priya sent the agenda.")})
    grip = _grip_of(built["vpn"])
    body = reader.get(f"/api/v1/grips/{grip.pk}/expand?before=1&after=5").json()
    assert body["grip"]["id"] == str(grip.pk) and body["session_id"] == "s1"
    assert [m["id"] for m in body["before"]] == [built["launch"]]
    assert body["source"]["id"] == built["vpn"]
    # The rest of session s1, across its two segments; nothing from session s2.
    assert [m["id"] for m in body["after"]] == [built["flaky"], built["budget"]]
    default = reader.get(f"/api/v1/grips/{grip.pk}/expand").json()
    assert len(default["before"]) == 1 and len(default["after"]) == 2
    nothing = reader.get(f"/api/v1/grips/{grip.pk}/expand?before=0&after=0").json()
    assert nothing["before"] == nothing["after"] == []
    # A memory stored without a session: its agent's other memories without one.
    lone = reader.get(f"/api/v1/grips/{_grip_of(built['rota']).pk}/expand").json()
    assert lone["session_id"] == "" and lone["before"] == lone["after"] == []
    # Grips above segments lead to the same source.
    year_grip = _grip_of(built["vpn"], "year")
    assert reader.get(f"/api/v1/grips/{year_grip.pk}/expand").json()["source"]["id"] == built["vpn"]


@pytest.mark.parametrize(("query", "field"), [
    ("level=decade", "level"),
    ("from=yesterday", "from"),
    ("from=", "from"),
    ("to=", "to"),
    ("level=", "level"),
    ("agent_id=", "agent_id"),
    ("to=2024-13-01", "to"),
    ("from=2024-02-01&to=2024-01-01", "to"),
    ("agent_id=no%20spaces", "agent_id"),
    ("limit=0", "limit"),
    ("levle=day", "levle"),
])
def test_bad_browse_parameters_are_400_naming_the_field(built, reader, query, field):
    response = reader.get(f"/api/v1/timeline?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(("query", "field"), [
    ("before=51", "before"), ("after=-1", "after"), ("before=two", "before"), ("after=%C2%B2", "after"),
    ("around=3", "around"),
])
def test_bad_expand_parameters_are_400_naming_the_field(built, reader, query, field):
    grip = _grip_of(built["vpn"])
    response = reader.get(f"/api/v1/grips/{grip.pk}/expand?{query}")
    assert response.status_code == 400 and response.json()["error"]["field"] == field


def test_another_tenants_nodes_and_grips_are_not_found(built, outsider, anonymous, system_admin):
    node = RollupNode.objects.get(level="year")
    grip = _grip_of(built["vpn"])
    for path in (f"/api/v1/timeline/{node.pk}", f"/api/v1/grips/{grip.pk}/expand",
                 "/api/v1/timeline/not-a-uuid", "/api/v1/grips/00000000-0000-0000-0000-000000000000/expand"):
        response = outsider.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert anonymous.get(path).status_code == 401
    assert outsider.get("/api/v1/timeline").json()["count"] == 0  # beta's own: empty
    assert outsider.get("/api/v1/timeline?namespace=alpha").status_code == 404
    # A system admin names the namespace and reads any.
    assert system_admin.get("/api/v1/timeline").json()["error"]["field"] == "namespace"
    assert system_admin.get("/api/v1/timeline?namespace=alpha").json()["count"] == 3
    assert system_admin.get(f"/api/v1/timeline/{node.pk}").status_code == 200


def test_an_agents_timeline_is_browsed_by_agent_id(built, alpha, agent, reader):
    build(alpha, agent_id="agent-1")
    mine = reader.get("/api/v1/timeline?level=year&agent_id=agent-1").json()["results"]
    assert len(mine) == 1 and mine[0]["agent_id"] == "agent-1"
    assert reader.get("/api/v1/timeline?level=year&agent_id=agent-9").json()["count"] == 0


def test_the_schema_documents_the_routes(client, db):
    schema = client.get("/api/schema/?format=json").json()
    browse = schema["paths"]["/api/v1/timeline"]["get"]
    assert {p["name"] for p in browse["parameters"]} >= {"level", "from", "to", "agent_id",
                                                         "namespace", "limit", "offset"}
    assert "/api/v1/timeline/{node_id}" in schema["paths"]
    expand = schema["paths"]["/api/v1/grips/{grip_id}/expand"]["get"]
    assert {p["name"] for p in expand["parameters"]} >= {"before", "after", "grip_id"}
