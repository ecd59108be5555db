"""Dashboard fixtures: a team admin of alpha, one of beta, memories in both."""

from __future__ import annotations

import pytest
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


@pytest.fixture
def alice(alpha) -> Client:
    """Team admin of alpha."""
    return person("alice", alpha)


@pytest.fixture
def bob(beta) -> Client:
    """Team admin of beta."""
    return person("bob", beta)


@pytest.fixture
def root(db) -> Client:
    return person("root", superuser=True)


def store(namespace, content: str, agent_id: str = "agent-1", **fields):
    principal = Principal(label=f"key:{agent_id}", agent_id=agent_id, role=Role.AGENT,
                          namespace_id=namespace.pk, namespace=namespace)
    return services.ingest(principal, {"content": content, **fields}).memory


@pytest.fixture
def memories(alpha, beta):
    return {
        "alpha": [store(alpha, "The deploy key rotates every ninety days.", tags=["ops"]),
                  store(alpha, "Lunch is at noon on Fridays.", agent_id="agent-2", kind="preference")],
        "beta": [store(beta, "Beta's deploy secret lives in the vault.", tags=["ops"])],
    }
