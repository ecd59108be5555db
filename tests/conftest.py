"""Shared fixtures: two tenants and a principal for every role, plus an outsider.

Every test can ask "and the outsider?": ``alpha`` is the namespace under test, ``beta``
belongs to someone else. Keys are real (hashed in the database, sent as Bearer).
"""

from __future__ import annotations

import pytest

from apps.core.roles import Role
from apps.tenancy.models import Namespace
from apps.tenancy.services import create_namespace
from tests.helpers.callers import Caller, make_caller

#: Fixtures and hooks of tests that start processes (Daphne, Chroma, Chromium, manage.py),
#: and their ``processes`` marker; pytester to test that plugin (tests/test_markers.py);
#: the summarizer provider's fake upstream (tests/core, tests/timeline); fresh PostgreSQL
#: databases for tests that run their own deployment on it.
pytest_plugins = ["tests.plugins.processes", "tests.plugins.order", "tests.plugins.live_layer",
                  "tests.plugins.fake_upstream", "tests.plugins.postgres_databases",
                  "tests.plugins.people", "tests.plugins.connection_guard",
                  "tests.plugins.static_files", "tests.plugins.embeddings_cache", "tests.plugins.passes",
                  "tests.plugins.key_cache", "tests.plugins.background_threads",
                  "pytester"]


@pytest.fixture(autouse=True)
def audit_anchor(settings, tmp_path):
    """Each test its own audit anchor file: the database starts over per test, the
    anchor must too."""
    settings.MEMORYWEB_AUDIT_ANCHOR = str(tmp_path / "audit-anchor.json")
    return tmp_path / "audit-anchor.json"


@pytest.fixture(autouse=True)
def key_store(settings, tmp_path):
    """Each test its own key store (data keys, erasure ledger) with the file provider,
    no unwrapped key held and nothing remembered about which namespace ids are
    encrypted: ids start over with the database."""
    from apps.core import namespace_keys
    from apps.memories import sealing

    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "keystore"
    settings.MEMORYWEB_KEY_PROVIDER = "file"
    settings.MEMORYWEB_KEK_PATH = ""
    namespace_keys.forget_all()
    sealing.forget()
    yield settings.MEMORYWEB_KEYSTORE_DIR
    namespace_keys.forget_all()
    sealing.forget()


@pytest.fixture
def vault(db) -> Namespace:
    """An encrypted namespace (issue 23): its data key in the test's key store."""
    return create_namespace("vault", encrypted=True)


@pytest.fixture
def vault_agent(vault) -> Caller:
    return make_caller(Role.AGENT, vault, "agent-v")


@pytest.fixture
def vault_admin(vault) -> Caller:
    return make_caller(Role.ADMIN, vault, "admin-v")


@pytest.fixture
def alpha(db) -> Namespace:
    return create_namespace("alpha", "Team Alpha")


@pytest.fixture
def beta(db) -> Namespace:
    return create_namespace("beta", "Team Beta")


@pytest.fixture
def reader(alpha) -> Caller:
    return make_caller(Role.READER, alpha, "reader-1")


@pytest.fixture
def agent(alpha) -> Caller:
    return make_caller(Role.AGENT, alpha, "agent-1")


@pytest.fixture
def team_admin(alpha) -> Caller:
    return make_caller(Role.ADMIN, alpha, "admin-1")


@pytest.fixture
def system_admin(db) -> Caller:
    return make_caller(Role.SYSTEM, None, "root")


@pytest.fixture
def outsider(beta) -> Caller:
    """An agent of another tenant: must never see alpha's data."""
    return make_caller(Role.AGENT, beta, "outsider-1")


@pytest.fixture
def anonymous() -> Caller:
    return make_caller(None, None)


@pytest.fixture
def callers(reader, agent, team_admin, system_admin, outsider, anonymous) -> dict[str, Caller]:
    return {
        "reader": reader, "agent": agent, "admin": team_admin, "system": system_admin,
        "outsider": outsider, "anonymous": anonymous,
    }


@pytest.fixture
def stored(agent):
    """Store memories in alpha through the API and return their JSON."""

    def _store(content: str, **fields) -> dict:
        response = agent.post("/api/v1/memories", {"content": content, **fields})
        assert response.status_code == 201, response.content
        return response.json()

    return _store


@pytest.fixture(autouse=True)
def fresh_term_counts():
    """Common-term pruning keeps a namespace's total and term counts per process for a
    minute (apps/memories/term_counts.py): a namespace id the next test reuses must not
    find the last test's. Nor its in-memory keyword indexes, which small namespaces use
    whatever the engine (apps/memories/small_keywords.py): the change log's numbers start
    over with the database too."""
    from apps.memories import keyword_index_log, lexical, term_counts

    term_counts.clear()
    lexical._totals.clear()
    keyword_index_log.indexes().clear()


@pytest.fixture
def keyword_tables(settings):
    """Every namespace gets its FTS5 table from its first memory, as before small
    namespaces were ranked in memory (apps/memories/small_keywords.py): for tests about
    the tables themselves."""
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0


@pytest.fixture
def vector_side(monkeypatch):
    """Which of hybrid recall's channels answers first (tests/memories/vector_order.py)."""
    from tests.memories.vector_order import vector_side as order

    return order(monkeypatch)


@pytest.fixture
def embed_calls(monkeypatch) -> list[int]:
    """Texts per call of the embedder, recorded (the real one still runs): how tests
    prove that an edit of tags, kind or metadata re-embeds nothing."""
    from apps.memories.embeddings import get_embedder

    embedder, calls = get_embedder(), []
    real = embedder.embed

    def counting(texts):
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(embedder, "embed", counting)
    return calls
