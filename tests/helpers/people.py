"""People logged in to the dashboard with a role, and memories stored for them, as the
dashboard's fixtures (tests/dashboard/conftest.py) and other tests make them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from apps.core.roles import Role
from apps.memories import services
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal


def person(username: str, namespace=None, role: Role = Role.ADMIN, superuser: bool = False) -> Client:
    users = get_user_model()
    if superuser:
        user = users.objects.create_superuser(username, f"{username}@example.org", "pw")
    else:
        user = users.objects.create_user(username, f"{username}@example.org", "pw")
    if namespace is not None:
        set_role(namespace, user, role)
    client = Client()
    client.force_login(user)
    return client


def store(namespace, content: str, agent_id: str = "agent-1", **fields):
    principal = Principal(label=f"key:{agent_id}", agent_id=agent_id, role=Role.AGENT,
                          namespace_id=namespace.pk, namespace=namespace)
    return services.ingest(principal, {"content": content, **fields}).memory
