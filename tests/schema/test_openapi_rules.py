"""The shared schema rules (apps/core/openapi.py) and the fixes schemathesis led to, each
checked on its own: fast, no server. tests/schema/test_schemathesis.py runs the whole
schema against a real Daphne."""

from __future__ import annotations

import pytest

from apps.core.openapi import NOT_BLANK
from apps.core.roles import Role
from apps.tenancy import grants
from apps.tenancy.models import Namespace, SharingGrant
from apps.tenancy.principal import Principal

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _error_ref(response):
    return response["content"]["application/json"]["schema"]


def test_every_operation_documents_the_errors_it_can_answer(schema):
    seen = 0
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        if path in ("/health", "/readiness"):
            assert "401" not in responses
            continue
        if path == "/v1/auth/token":
            assert {"400", "401", "429"} <= set(responses), path
            continue
        expected = {"400", "401", "403", "404", "429"}
        if method != "get":
            expected |= {"409", "413"}
        assert expected <= set(responses), (method, path, sorted(responses))
        error = _error_ref(responses["400"])
        if path.startswith("/v1/"):  # seed 003's flat errors, or the envelope (413 up front)
            assert error == {"oneOf": [{"$ref": "#/components/schemas/FlatError"},
                                       {"$ref": "#/components/schemas/Error"}]}
        else:
            assert error == {"$ref": "#/components/schemas/Error"}
        seen += 1
    assert seen > 60
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


def test_the_drop_in_routes_are_in_the_schema_with_their_bodies(schema):
    schemas = schema["components"]["schemas"]
    paths = schema["paths"]
    assert {"/cmm/ingest", "/cmm/recall", "/cmm/memory/{memory_id}", "/v1/store",
            "/v1/recall/batch", "/v1/update", "/v1/forget"} <= set(paths)

    def body(path, method):
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        return schemas[ref["$ref"].rsplit("/", 1)[1]]

    ingest = body("/cmm/ingest", "post")
    assert ingest["oneOf"] == [{"required": [n], "properties": {n: {"type": "string"}}}
                               for n in ("gist", "content", "text")]
    assert ingest["additionalProperties"] is False
    assert "oneOf" in body("/cmm/ingest_and_recall", "post")
    assert body("/cmm/memory/{memory_id}", "put")["additionalProperties"] is False
    assert body("/cmm/recall", "post")["required"] == ["query"]
    assert body("/v1/store", "post")["required"] == ["content"]
    assert body("/v1/update", "patch")["required"] == ["id"]
    assert body("/v1/recall/batch", "post")["properties"]["queries"]["minItems"] == 1
    assert body("/v1/store/batch", "post")["properties"]["memories"]["minItems"] == 1
    assert body("/api/v1/memories/batch", "post")["properties"]["memories"]["maxItems"] == 1000
    assert "requestBody" in paths["/v1/forget"]["delete"]  # a DELETE with a JSON body


def test_strict_bodies_say_so_and_text_must_not_be_blank(schema):
    memory = schema["components"]["schemas"]["MemoryInputRequest"]
    assert memory["additionalProperties"] is False
    assert memory["properties"]["content"]["pattern"] == NOT_BLANK
    assert memory["properties"]["tags"]["items"]["pattern"] == NOT_BLANK
    assert "nullable" not in memory["properties"]["metadata"]  # null metadata is refused
    response_side = schema["components"]["schemas"]["Memory"]["properties"]["content"]
    assert "pattern" not in response_side


def test_limits_are_in_the_schema(schema):
    def parameter(path, name):
        return next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name)

    assert parameter("/cmm/memories", "limit")["schema"] == {"type": "integer", "minimum": 1,
                                                             "maximum": 1000}
    assert parameter("/v1/memories", "limit")["schema"]["maximum"] == 1000
    assert parameter("/api/v1/memories", "offset")["schema"]["minimum"] == 0
    assert parameter("/api/v1/memories", "tag")["schema"] == {"type": "string"}
    ids = parameter("/api/v1/export", "ids")
    assert (ids["explode"], ids["schema"]["minItems"]) == (False, 1)


def test_metadata_nests_a_bounded_depth_without_self_reference(schema):
    components = schema["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value.rsplit("/", 1)[1]
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for name, component in components.items():  # no component reaches itself
        seen, todo = set(), list(refs(component))
        while todo:
            current = todo.pop()
            assert current != name, f"{name} refers to itself"
            if current not in seen:
                seen.add(current)
                todo += refs(components.get(current, {}))
    metadata = components["MemoryInputRequest"]["properties"]["metadata"]
    assert metadata["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue7"}
    assert "JsonValue0" in components and "JsonValue8" not in components


@pytest.mark.parametrize(("metadata", "status"), [
    ({"a": [[[[[[1]]]]]]}, 201),  # 7 levels with the object itself
    ({"a": [[[[[[[1]]]]]]]}, 201),  # 8
    ({"a": [[[[[[[[1]]]]]]]]}, 400),  # 9: deeper than the schema says
    ({"a": 1e19}, 400),  # a float outside the 64-bit range, like an integer
    ({"a": 9223372036854775807}, 201),
])
def test_metadata_is_refused_where_the_schema_says_so(agent, metadata, status):
    response = agent.post("/api/v1/memories", {"content": f"m {metadata}", "metadata": metadata})
    assert response.status_code == status, response.content
    if status == 400:
        assert response.json()["error"]["field"] == "metadata"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/cmm/recall", {"query": "x", "k": 5, "top_k": "many"}, "top_k"),  # top_k was ignored
    ("/cmm/recall", {"query": "x", "agent_id": 0}, "filters.agent_id"),  # 0 was "no filter"
    ("/cmm/recall", {"query": "x", "namespace": {}}, "namespace"),  # {} was "no namespace"
    ("/v1/recall", {"query": "x", "agent": []}, "filters.agent_id"),  # [] was "no filter"
])
def test_drop_in_bodies_are_refused_where_the_schema_says_so(agent, path, body, field):
    response = agent.post(path, body)
    assert response.status_code in (400, 404), response.content
    error = response.json()["error"]
    assert (error["field"] if isinstance(error, dict) else response.json()["field"]) == field


def test_bad_after_headers_are_refused_not_ignored(agent):
    for path, body in (("/api/v1/recall", {"query": "x"}),
                       ("/v1/recall", {"query": "x", "after": "2026-01-01T00:00:00Z"})):
        response = agent.post(path, body, HTTP_X_MEMORY_AFTER="j7")
        assert response.status_code == 400, (path, response.content)


def test_null_filters_are_refused_with_or_without_the_after_header(agent):
    for headers in ({}, {"HTTP_X_MEMORY_AFTER": "2026-01-01"}):
        response = agent.post("/api/v1/recall", {"query": "x", "filters": None}, **headers)
        assert response.status_code == 400, (headers, response.content)
        assert response.json()["error"]["field"] == "filters"


def test_erasure_list_refuses_an_empty_state(team_admin):
    response = team_admin.get("/api/v1/erasure-requests?state=")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "state"


def test_revoking_a_grant_whose_row_went_meanwhile_is_a_404_not_a_500(alpha, beta, monkeypatch):
    root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
    grant = grants.create_grant(root, "alpha", {"grantee": "beta"})
    fetched = grants.get_grant

    def fetch_then_lose_the_row(*args):  # a namespace delete between read and write
        found = fetched(*args)
        SharingGrant.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(grants, "get_grant", fetch_then_lose_the_row)
    with pytest.raises(grants.NotFound):
        grants.revoke_grant(root, "alpha", grant.pk)
    assert Namespace.objects.filter(slug="alpha").exists()


#: What ECMA 262's ``\s`` matches (the schema's regex dialect): Python's str.strip() trims
#: more, and NOT_BLANK must name what it trims besides.
ECMA_SPACE = (set("\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff")
              | {chr(c) for c in range(0x2000, 0x200B)})


def test_the_not_blank_pattern_names_every_space_python_strips():
    import re
    import sys

    stripped = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    named = re.compile("[" + NOT_BLANK[2:-1].replace("\\s", "") + "]")  # besides \s
    missing = sorted(hex(ord(c)) for c in stripped - ECMA_SPACE if not named.fullmatch(c))
    assert missing == [], f"str.strip() trims these, the schema's pattern accepts them: {missing}"
