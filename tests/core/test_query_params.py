"""An unknown query parameter is a 400 naming it, on every route (issue 16, item 12).

``GET /api/v1/memories?agent=nobody`` used to return everything (the filter is
``agent_id``), while an unknown body field was already a 400. One mechanism
(apps/core/query_params.py) now knows each route's parameters: its filterset, paging and
ordering for lists, plus what its handlers read; anything else is refused, in each door's
error shape.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apps.memories.models import Memory
from tests.routes import API_PREFIXES


@pytest.fixture
def world(agent, team_admin, alpha):
    memory = agent.post("/api/v1/memories", {"content": "the one memory"}).json()
    erasure = team_admin.post("/api/v1/erasure-requests", {"agent_id": "agent-1"}).json()
    return {"memory": memory["id"], "erasure": erasure["id"]}


#: (caller, path) for every GET route, each with a parameter it does not take.
GETS = [
    ("agent", "/api/v1/memories?agent=nobody"),
    ("agent", "/api/v1/memories?occurred=2024"),
    ("agent", "/api/v1/memories/{memory}?namespace=alpha"),
    ("admin", "/api/v1/memories/{memory}/versions?limit=5"),
    ("agent", "/api/v1/namespaces?role=admin"),
    ("agent", "/api/v1/namespaces/alpha?verbose=1"),
    ("admin", "/api/v1/namespaces/alpha/members?role=admin"),
    ("admin", "/api/v1/namespaces/alpha/keys?role=agent"),
    ("admin", "/api/v1/namespaces/alpha/grants?status=active"),
    ("agent", "/api/v1/sharing/accessible?grantor=beta"),
    ("admin", "/api/v1/audit?op=memory.create"),
    ("system", "/api/v1/audit/verify?deep=1"),
    ("system", "/api/v1/encryption?namespace=alpha"),
    ("system", "/api/v1/erasure-ledger?status=executed"),
    ("admin", "/api/v1/export?agent=agent-1"),
    ("admin", "/api/v1/erasure-requests?status=requested"),
    ("admin", "/api/v1/erasure-requests/{erasure}?full=1"),
    ("agent", "/cmm/memories?agent=agent-1"),
    ("agent", "/cmm/memory/1?verbose=1"),
    ("agent", "/cmm/health?deep=1"),
    ("admin", "/v1/export?agent=agent-1"),
    ("agent", "/v1/memories?agent_id=agent-1"),
]


@pytest.mark.parametrize(("who", "path"), GETS, ids=[p for _, p in GETS])
def test_an_unknown_query_parameter_on_a_get_route_is_400_naming_it(callers, world, who, path):
    response = callers[who].get(path.format(**world))
    assert response.status_code == 400, response.content
    body = response.json()
    name = path.split("?")[1].split("=")[0]
    if path.startswith("/v1/"):  # seed 003's error shape
        assert body["field"] == name and name in body["error"]
    else:
        assert body["error"]["field"] == name and name in body["error"]["message"]


def test_the_memory_list_no_longer_answers_everything_for_a_typo(agent, world):
    response = agent.get("/api/v1/memories?agent=nobody")
    error = response.json()["error"]
    assert error["code"] == "invalid" and "agent_id" in error["message"]  # what it does take


@pytest.mark.parametrize("query", [
    "namespace=alpha", "agent_id=agent-1", "session_id=s", "kind=fact", "tag=x",
    "created_after=2020-01-01T00:00:00Z", "created_before=2999-01-01T00:00:00Z",
    "occurred_after=2020-01-01T00:00:00Z", "occurred_before=2999-01-01T00:00:00Z",
    "ordering=occurred_at", "ordering=-created_at", "limit=5", "offset=0", "format=json"])
def test_every_documented_list_parameter_is_still_taken(agent, world, query):
    assert agent.get(f"/api/v1/memories?{query}").status_code == 200


def test_writes_refuse_parameters_they_do_not_read(agent, system_admin, alpha):
    refused = agent.post("/api/v1/memories?agent_id=agent-9", {"content": "x"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "agent_id"
    assert not Memory.objects.exists()
    taken = system_admin.post("/api/v1/memories?namespace=alpha", {"content": "x"})
    assert taken.status_code == 201, taken.content


def test_unauthenticated_callers_still_get_401_first(anonymous):
    assert anonymous.get("/api/v1/memories?agent=nobody").status_code == 401


def _routes(resolver=None, prefix: str = ""):
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry, pattern)
        elif isinstance(entry, URLPattern) and pattern.startswith(API_PREFIXES):
            yield pattern, entry.callback


def test_every_api_and_drop_in_view_checks_its_query_parameters():
    """A route added later without the mechanism fails here, not in production."""
    from apps.core.query_params import KnownQueryParams

    unchecked = sorted(pattern for pattern, callback in _routes()
                       if not issubclass(getattr(callback, "cls", object), KnownQueryParams))
    assert not unchecked, f"views that ignore unknown query parameters: {unchecked}"
