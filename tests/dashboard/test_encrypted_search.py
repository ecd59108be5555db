"""The dashboard's search boxes in encrypted namespaces (issue 23; docs/dashboard.md,
"Finding memories" and "Learned facts"), beside plain ones.

Memories: the search goes through the keyword index, which holds blind tokens in an
encrypted namespace: every word, any word, phrases and exact items find the same rows as
in a plain namespace, highlighted on the opened text, within the person's namespaces; a
namespace whose key is gone is left out with a message instead of a 503 for the page.
Learned facts: their text is sealed, so SQL's ``icontains`` finds nothing; the newest
rows are opened and read (capped, and saying so) and the whole term is looked up by the
fact's keyed ``key``. Runs on SQLite and PostgreSQL (tests/run_scaled.py)."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.core import envelope, namespace_keys
from apps.gateway import facts
from apps.gateway.models import LearnedFact
from apps.memories import admin_search
from tests.dashboard.test_lookup import ids, listed, page_of
from tests.helpers.people import person, store

FACTS = "/admin/gateway/learnedfact/"


def raw_content(memory) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM memories_memory WHERE id = %s",
                       [memory._meta.pk.get_db_prep_value(memory.pk, connection)])
        return cursor.fetchone()[0]


@pytest.fixture
def sealed_and_plain(vault, alpha):
    return {
        "both": store(vault, "The walnut vault holds the spare deploy key; mail jane@example.com."),
        "walnut": store(vault, "The walnut tree in the yard lost a branch."),
        "vault": store(vault, "Vault audits happen on Mondays."),
        "other": store(vault, "Write to mary.jane@example.com about the deploy keys."),
        "plain": store(alpha, "The walnut vault of the plain namespace."),
    }


def test_memory_search_finds_an_encrypted_namespaces_memories_like_a_plain_ones(
        root, sealed_and_plain):
    m = sealed_and_plain
    assert raw_content(m["both"]).startswith(envelope.TEXT_PREFIX)  # SQL holds ciphertext
    assert set(listed(root, q="walnut vault")) == ids(m["both"], m["plain"])  # every word
    assert set(listed(root, q="walnut vault", match="any")) == ids(
        m["both"], m["walnut"], m["vault"], m["plain"])
    assert listed(root, q="jane@example.com") == [str(m["both"].pk)]  # exactly as written
    assert set(listed(root, q='"deploy key"')) == ids(m["both"])  # a phrase, not "keys"
    assert set(listed(root, q="deploy key")) == ids(m["both"], m["other"])  # stemmed words
    page = page_of(root, q="walnut")
    assert "<mark>walnut</mark>" in page.lower() or "<mark>Walnut</mark>" in page
    assert "spare deploy key" in page  # the opened text, not ciphertext


def test_memory_search_keeps_to_the_persons_namespaces(vault, alpha, sealed_and_plain):
    m = sealed_and_plain
    keeper = person("keeper", vault)  # team admin of the encrypted namespace only
    alice = person("alice", alpha)
    assert set(listed(keeper, q="walnut")) == ids(m["both"], m["walnut"])
    assert set(listed(alice, q="walnut")) == ids(m["plain"])


def test_memory_search_is_capped_in_an_encrypted_namespace_too(root, sealed_and_plain, settings):
    settings.MEMORYWEB_DASHBOARD_SEARCH_LIMIT = 2
    assert "2+ matches — refine your search." in page_of(root, q="walnut", match="any")


def test_a_namespace_whose_key_is_gone_is_left_out_of_the_search_with_a_message(
        root, vault, sealed_and_plain):
    namespace_keys.shred(vault.pk)
    page = page_of(root, q="walnut")  # was a 503 for the whole page
    assert listed(root, q="walnut") == [str(sealed_and_plain["plain"].pk)]
    assert "Not searched: namespace “vault”" in page and "destroyed" in page


# --- learned facts ------------------------------------------------------------------------

def learned(namespace, text: str, **fields) -> LearnedFact:
    return LearnedFact.objects.create(namespace=namespace, agent_id="agent-1", text=text,
                                      key=facts.key(text, namespace), **fields)


def fact_rows(client, **params) -> set[str]:
    response = client.get(FACTS, {"state": "all", **params})
    assert response.status_code == 200, response.status_code
    page = response.content.decode()
    return {str(f.pk) for f in LearnedFact.objects.all()
            if f"/admin/gateway/learnedfact/{f.pk}/change/" in page}


@pytest.fixture
def learned_facts(vault, alpha):
    return {
        "staging": learned(vault, "The staging database is on host db-2."),
        "deploy": learned(vault, "Deploys to staging need the VPN."),
        "lunch": learned(vault, "Lunch is at noon."),
        "plain": learned(alpha, "The staging proxy listens on 8443."),
    }


def test_fact_search_reads_the_sealed_text_of_encrypted_namespaces(root, learned_facts):
    f = learned_facts
    assert fact_rows(root, q="staging") == ids(f["staging"], f["deploy"], f["plain"])
    assert fact_rows(root, q="STAGING database") == ids(f["staging"])  # every word, any case
    assert fact_rows(root, q='"on host db-2"') == ids(f["staging"])
    assert fact_rows(root, q="nothing-like-it") == set()


def test_fact_search_keeps_to_the_persons_namespaces(vault, alpha, learned_facts):
    assert fact_rows(person("keeper", vault), q="staging") == ids(
        learned_facts["staging"], learned_facts["deploy"])
    assert fact_rows(person("alice", alpha), q="staging") == ids(learned_facts["plain"])


def test_fact_search_past_the_cap_says_so_and_still_finds_the_whole_fact(
        root, learned_facts, monkeypatch):
    monkeypatch.setattr(admin_search, "SEALED_SCAN_ROWS", 1)
    response = root.get(FACTS, {"state": "all", "q": "staging"})
    assert "only the newest 1 rows were searched" in response.content.decode()
    # The whole text of a fact past the cap: found by its keyed key.
    found = fact_rows(root, q="the staging database is on host db-2")
    assert str(learned_facts["staging"].pk) in found


def test_fact_search_with_a_namespace_key_gone_says_so(root, vault, learned_facts):
    namespace_keys.shred(vault.pk)
    response = root.get(FACTS, {"state": "all", "q": "staging"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Not searched: namespace “vault”" in page
    assert f"/admin/gateway/learnedfact/{learned_facts['plain'].pk}/change/" in page
