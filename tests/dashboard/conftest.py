"""Dashboard fixtures: a team admin of alpha, one of beta, memories in both."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.helpers.people import person, store


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


@pytest.fixture
def memories(alpha, beta):
    return {
        "alpha": [store(alpha, "The deploy key rotates every ninety days.", tags=["ops"]),
                  store(alpha, "Lunch is at noon on Fridays.", agent_id="agent-2", kind="preference")],
        "beta": [store(beta, "Beta's deploy secret lives in the vault.", tags=["ops"])],
    }
