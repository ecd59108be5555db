"""``databases()``: a fresh PostgreSQL database for the test (the machine's server,
``MEMORYWEB_TEST_POSTGRES``), dropped afterwards — for tests that run deployments on
PostgreSQL of their own (tests/ops/test_scaled.py, tests/server/test_restore_replay_postgres.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

POSTGRES = os.environ.get("MEMORYWEB_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def databases() -> Iterator[Callable[[], str]]:
    """``databases()`` makes a database and returns its name."""
    made: list[str] = []

    def make() -> str:
        name = f"mw_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    yield make
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
