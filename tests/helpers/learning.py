"""Reading what the gateway learned, from the test process: the Daphne's SQLite database
opened read-only (tests/helpers/gateway.py puts it at ``<base>/data``), and the data
directory's files searched for a planted secret."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def query(data_dir: Path, sql: str, *args: Any) -> list[tuple]:
    connection = sqlite3.connect(f"file:{data_dir / 'memoryweb.sqlite3'}?mode=ro", uri=True,
                                 timeout=30)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def facts(data_dir: Path, namespace: str = "alpha") -> dict[str, tuple[str, int, str]]:
    """The namespace's learned facts: text -> (state, seen count, agent id)."""
    return {text: (state, seen, agent) for text, state, seen, agent in query(
        data_dir, "SELECT f.text, f.state, f.seen_count, f.agent_id FROM gateway_learnedfact f "
        "JOIN tenancy_namespace n ON n.id = f.namespace_id WHERE n.slug = ?", namespace)}


def pending(data_dir: Path) -> int:
    return query(data_dir, "SELECT COUNT(*) FROM gateway_pendingexchange")[0][0]


def wait_for(check: Callable[[], T], what: str, timeout: float = 120.0) -> T:
    """``check()``'s first truthy value (the learner runs after the answer, on its thread)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not learned within {timeout:g} s: {what}")
        time.sleep(0.1)


def files_holding(data_dir: Path, secret: str) -> list[str]:
    """Every file under the data directory whose bytes hold ``secret`` (the databases,
    their write-ahead logs, the vector store, the job queue)."""
    needle = secret.encode()
    return [str(path) for path in sorted(data_dir.rglob("*"))
            if path.is_file() and needle in path.read_bytes()]
