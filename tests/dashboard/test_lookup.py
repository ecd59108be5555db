"""Precise lookup in the dashboard's memory list (issue 17, item 2).

Every word by default and any word as an option; quoted phrases and e-mail addresses
exactly; subject and metadata filters; rows grouped by namespace; an honest count and no
select-all when capped; highlighted, escaped matches; nothing of another tenant. Runs on
SQLite (FTS5) and PostgreSQL (``DATABASE_URL=postgres://…``, as ``make test-scaled``).
"""

from __future__ import annotations

import re

import pytest

from apps.core.roles import Role
from apps.memories import lexical, lexical_lookup, services
from apps.memories.admin import MemoryAdmin
from apps.memories.models import Memory
from apps.privacy.selectors import Selector
from apps.tenancy.principal import Principal
from tests.helpers.people import store

LIST = "/admin/memories/memory/"
SYSTEM = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
_ROW = re.compile(r'href="/admin/memories/memory/([0-9a-f-]{36})/change/')


def page_of(client, **params) -> str:
    response = client.get(LIST, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def listed(client, **params) -> list[str]:
    """The memory ids of the list's rows, in order."""
    page = page_of(client, **params)
    table = page[page.index('id="result_list"'):page.index("</table>", page.index('id="result_list"'))] \
        if 'id="result_list"' in page else ""
    return list(dict.fromkeys(_ROW.findall(table)))


def ids(*memories) -> set[str]:
    return {str(m.pk) for m in memories}


def test_an_email_address_finds_exactly_that_persons_memories(alice, alpha):
    jane = [store(alpha, "Jane Doe (jane@example.com) asked for her invoices."),
            store(alpha, "Reply to JANE@example.com about the refund.")]
    store(alpha, "Mary Jane writes from mary.jane@example.com.")
    store(alpha, "jane@example.com.au is another Jane, in Sydney.")
    store(alpha, "Example.com hosts Jane's reading list; the com port is open.")
    store(alpha, "Write to jane@example.community for the forum.")
    assert set(listed(alice, q="jane@example.com")) == ids(*jane)
    assert set(listed(alice, q="jane@example.com", match="any")) == ids(*jane)  # exact either way


def test_every_word_by_default_and_any_word_as_an_option(alice, alpha):
    both = store(alpha, "The walnut vault holds the spare deploy key.")
    walnut = store(alpha, "The walnut tree in the yard lost a branch.")
    vault = store(alpha, "Vault audits happen on Mondays.")
    store(alpha, "Lunch is at noon.")
    assert listed(alice, q="walnut vault") == [str(both.pk)]
    page = page_of(alice, q="walnut vault")
    assert 'name="match" value="any" id="match-any">' in page  # the box, not ticked
    assert "Every one of" in page
    assert set(listed(alice, q="walnut vault", match="any")) == ids(both, walnut, vault)
    page = page_of(alice, q="walnut vault", match="any")
    assert 'id="match-any" checked' in page and "Any of" in page
    # The option rides along with the list's links (sorting, filters, pages).
    assert "match=any" in page[page.index('id="changelist-filter"'):]


def test_a_quoted_phrase_matches_those_words_side_by_side_as_written(alice, alpha):
    phrase = store(alpha, "The deploy key rotates every ninety days.")
    apart = store(alpha, "Which key do we deploy on Fridays?")
    stemmed = store(alpha, "Deploys keyed in by hand are logged.")
    assert listed(alice, q='"deploy key"') == [str(phrase.pk)]
    assert set(listed(alice, q="deploy key")) == ids(phrase, apart, stemmed)
    assert listed(alice, q='“deploy key” ninety') == [str(phrase.pk)]  # curly quotes too


def test_the_subject_filter_selects_what_export_and_erasure_would(alice, alpha):
    lease = store(alpha, "Call about the lease renewal.", metadata={"subject_id": "jane-doe"})
    edited = store(alpha, "Jane's allergy note.", metadata={"subject_id": "jane-doe"})
    services.update(SYSTEM, edited.pk, {"metadata": {}})  # a version still names her
    numbered = store(alpha, "Numbered subject note.", metadata={"subject_id": 42})
    store(alpha, "Someone else's lease.", metadata={"subject_id": "john"})
    store(alpha, "No subject at all.")
    assert set(listed(alice, subject_id="jane-doe")) == ids(lease, edited)
    selected = Selector(alpha, ("subject_id", "jane-doe")).memories()
    assert set(listed(alice, subject_id="jane-doe")) == {str(pk) for pk in selected.values_list("pk",
                                                                                                flat=True)}
    assert set(listed(alice, subject_id="42")) == ids(numbered)
    assert listed(alice, subject_id="jane-doe", q="lease") == [str(lease.pk)]
    page = page_of(alice)
    assert 'id="filter-subject_id"' in page  # the box for any subject id
    assert "?subject_id=john" in page and "john (1)" in page  # and the frequent ones


def test_the_metadata_filter_takes_key_equals_value(alice, alpha):
    ticket = store(alpha, "Ticket note.", metadata={"ticket": "T-42", "priority": 2})
    flagged = store(alpha, "Flagged note.", metadata={"flag": True, "ticket": "T-7"})
    store(alpha, "Plain note.", metadata={"priority": "high"})
    assert set(listed(alice, metadata="ticket=T-42")) == ids(ticket)
    assert set(listed(alice, metadata=" ticket = T-42 ")) == ids(ticket)
    assert set(listed(alice, metadata="priority=2")) == ids(ticket)  # the number it spells
    assert set(listed(alice, metadata="flag=true")) == ids(flagged)
    assert set(listed(alice, metadata="ticket")) == ids(ticket, flagged)  # has the key
    assert listed(alice, metadata="ticket=T-4") == []
    page = page_of(alice, metadata="=x")
    assert listed(alice, metadata="=x") == [] and "The metadata filter takes key=value" in page


def test_results_across_namespaces_are_grouped_by_namespace_best_first(root, alpha, beta):
    alpha_strong = store(alpha, "Deploy, deploy: the deploy checklist.")
    alpha_weak = store(alpha, "A long note on lunch, tables and chairs, and how to deploy "
                              "the new menu boards in the canteen next spring.")
    beta_strong = store(beta, "Deploy deploy deploy.")
    beta_weak = store(beta, "The quarterly review of every deploy, with all the numbers "
                            "from the spreadsheet and the comments of the whole team.")
    order = listed(root, q="deploy")
    assert order == [str(m.pk) for m in (alpha_strong, alpha_weak, beta_strong, beta_weak)]
    page = page_of(root, q="deploy")
    assert "Grouped by namespace" in page
    assert re.search(rf'href="\?namespace={alpha.pk}&amp;q=deploy">alpha</a> \(2\) · '
                     rf'<a href="\?namespace={beta.pk}&amp;q=deploy">beta</a> \(2\)', page)
    assert listed(root, q="deploy", namespace=beta.pk) == [str(beta_strong.pk), str(beta_weak.pk)]
    assert "Grouped by namespace" not in page_of(root, q="deploy", namespace=beta.pk)


def test_a_capped_search_says_so_and_select_all_is_honest(alice, alpha, settings, monkeypatch):
    monkeypatch.setattr(MemoryAdmin, "list_per_page", 2)  # several pages: select-all is offered
    matches = [store(alpha, f"Invoice {i} for the walnut order.") for i in range(5)]
    settings.MEMORYWEB_DASHBOARD_SEARCH_LIMIT = 3
    page = page_of(alice, q="invoice")
    assert "3+ matches — refine your search." in page
    assert "3+ results" in page and "3+ memories (the first 3 listed)" in page
    assert not re.search(r"\b3 results\b|(?<!than )\b3 memories\b", page)  # never as if exact
    assert not re.search(r"Select all \d", page) and "Select-all is off" in page
    response = alice.post(f"{LIST}?q=invoice", {"action": "delete_selected", "select_across": "1",
                                               "index": "0", "_selected_action": [matches[0].pk]})
    assert response.status_code == 302  # refused, not the deletion's confirmation page
    assert Memory.objects.filter(pk__in=[m.pk for m in matches]).count() == 5
    followed = alice.get(response["Location"]).content.decode()
    assert "Nothing was done: the search matches more than 3 memories" in followed

    settings.MEMORYWEB_DASHBOARD_SEARCH_LIMIT = 5  # exactly at the cap: exact
    page = page_of(alice, q="invoice")
    assert "5 matches." in page and "refine your search" not in page
    assert "Select all 5 memories" in page and "Select-all is off" not in page
    confirm = alice.post(f"{LIST}?q=invoice", {"action": "delete_selected", "select_across": "1",
                                              "index": "0", "_selected_action": [matches[0].pk]})
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    assert all(str(m.pk) in confirm.content.decode() or m.content in confirm.content.decode()
               for m in matches)


def test_matched_terms_are_highlighted_and_the_content_escaped(alice, alpha):
    store(alpha, '<script>alert("x")</script> The <b>deploy</b> plan & more.')
    far = store(alpha, "Filler words " * 12 + "then the needle appears, late in the text.")
    page = page_of(alice, q="deploy")
    assert "<script>alert" not in page and "<b>deploy" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; The &lt;b&gt;<mark>deploy</mark>&lt;/b&gt; " \
           "plan &amp; more." in page
    page = page_of(alice, q="needle")
    assert re.search(r"…[^<]*the <mark>needle</mark> appears, late in the text\.", page)
    assert str(far.pk) in page
    exact = page_of(alice, q='"needle appears"')
    assert "<mark>needle appears</mark>" in exact


def test_a_team_admin_never_sees_another_namespaces_rows_or_choices(alice, bob, alpha, beta):
    mine = store(alpha, "Walnut invoice for jane@example.com.", metadata={"subject_id": "jane-doe",
                                                                         "ticket": "A-1"})
    theirs = store(beta, "Walnut invoice for jane@example.com too.",
                   metadata={"subject_id": "beta-only-subject", "ticket": "A-1"})
    for params in ({"q": "walnut invoice"}, {"q": "walnut", "match": "any"},
                   {"q": "jane@example.com"}, {"metadata": "ticket=A-1"}, {"subject_id": "jane-doe"}):
        assert listed(alice, **params) == [str(mine.pk)], params
        assert listed(bob, **params) == ([str(theirs.pk)] if "subject_id" not in params else [])
    assert listed(alice, subject_id="beta-only-subject") == []
    page = page_of(alice, q="walnut")
    assert "beta-only-subject" not in page and "Grouped by namespace" not in page
    assert "jane-doe (1)" in page


@pytest.mark.parametrize("text, words, exact", [
    ("jane@example.com", (), ("jane@example.com",)),
    ('Jane\'s "Deploy  Key." follow-up', ("jane",), ("deploy key", "follow-up")),
    ("https://example.com/a/ T-1234", (), ("https://example.com/a", "t-1234")),
    ("the", ("the",), ()),
])
def test_parse_lookup(db, text, words, exact):
    parsed = lexical_lookup.parse_lookup(text)
    assert (parsed.words, parsed.exact) == (words, exact)


def test_recall_keeps_its_or_of_words(db):
    """The API's keyword stage is untouched: an address is still the OR of its words."""
    assert lexical.build_query("jane@example.com").terms == ("jane", "example", "com")


def test_the_metadata_and_subject_filters_work_on_sealed_metadata(root, vault, alpha):
    """An encrypted namespace's metadata is sealed: its filters compare blind tokens
    (apps/memories/sealing.py ``blind_match``), beside a plain namespace's values."""
    sealed = store(vault, "Sealed ticket note.", metadata={"ticket": "T-42", "subject_id": "ann"})
    other = store(vault, "Another sealed note.", metadata={"ticket": "T-7", "priority": 2})
    plain = store(alpha, "Plain ticket note.", metadata={"ticket": "T-42"})
    assert set(listed(root, metadata="ticket=T-42")) == ids(sealed, plain)
    assert set(listed(root, metadata="priority=2")) == ids(other)  # the number it spells
    assert len(listed(root, metadata="ticket")) == 3  # has the key, sealed or not
    assert listed(root, subject_id="ann") == [str(sealed.pk)]
