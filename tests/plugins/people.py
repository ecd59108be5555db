"""People signed in to the dashboard (Django test clients): ``alice`` team admin of alpha,
``bob`` of beta, ``root`` a superuser — for the dashboard's tests and the gateway's pages."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.helpers.people import person


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
