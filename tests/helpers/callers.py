"""API callers with a real key (hashed in the database, sent as Bearer), one per role:
the ``reader``/``agent``/... fixtures of tests/conftest.py are built with these, and a
test that needs another caller makes one."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.test import APIClient

from apps.core.roles import Role
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.services import create_api_key


@dataclass
class Caller:
    """An API client authenticated with one key."""

    client: APIClient
    key: ApiKey | None
    raw: str | None
    role: str

    def post(self, path, data=None, **kw):
        return self.client.post(path, data, format="json", **kw)

    def get(self, path, data=None, **kw):
        return self.client.get(path, data, **kw)

    def patch(self, path, data=None, **kw):
        return self.client.patch(path, data, format="json", **kw)

    def put(self, path, data=None, **kw):
        return self.client.put(path, data, format="json", **kw)

    def delete(self, path, **kw):
        return self.client.delete(path, **kw)


def make_caller(role: Role | None, namespace: Namespace | None, agent_id: str = "agent-1") -> Caller:
    client = APIClient()
    if role is None:
        return Caller(client, None, None, "anonymous")
    key, raw = create_api_key(role=role, agent_id=agent_id, namespace=namespace)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return Caller(client, key, raw, role.label)
