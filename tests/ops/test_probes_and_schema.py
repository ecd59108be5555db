"""Health probes, the OpenAPI schema and the interactive docs."""

from __future__ import annotations

import re

from django.test import Client


def test_health_needs_no_credentials(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_checks_database_and_vector_store(client, db):
    response = client.get("/readiness")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "vector_store": "ok"}
    assert body["outbox_backlog"] == 0


def test_openapi_schema_lists_every_endpoint(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    for path in ["/api/v1/memories", "/api/v1/memories/batch", "/api/v1/memories/{id}",
                 "/api/v1/recall", "/api/v1/ingest_and_recall", "/api/v1/agents/{agent_id}/memories",
                 "/health", "/readiness"]:
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    recall = schema["components"]["schemas"]["RecallInputRequest"]["properties"]
    assert recall["k"]["maximum"] == 100


def test_api_docs_load_nothing_from_another_host(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)
    assert external == []


def test_admin_login_is_the_allauth_login_page(db):
    response = Client().get("/admin/login/", follow=True)
    assert response.status_code == 200
    assert response.request["PATH_INFO"] == "/accounts/login/"
    assert b'name="password"' in response.content
