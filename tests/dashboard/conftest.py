"""Dashboard fixtures: memories in alpha and beta (the people, alice, bob and root, are
tests/plugins/people.py's)."""

from __future__ import annotations

import pytest

from tests.helpers.people import store


@pytest.fixture
def memories(alpha, beta):
    return {
        "alpha": [store(alpha, "The deploy key rotates every ninety days.", tags=["ops"]),
                  store(alpha, "Lunch is at noon on Fridays.", agent_id="agent-2", kind="preference")],
        "beta": [store(beta, "Beta's deploy secret lives in the vault.", tags=["ops"])],
    }
