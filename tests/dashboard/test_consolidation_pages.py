"""Issue 21 item 6, server side: the dashboard's consolidation review (a dry run's proposals
side by side, accept through a confirmation, reject on the page only, the conflicts), and
the lineage block of the memory page (merged into, merged from, conflicts, unmerge).

Who may do what (readers and agents get no dashboard; another tenant's namespace or
memory is a 404), that a GET never writes and every POST needs its CSRF token. The
browser journey is tests/dashboard/browser/test_consolidation_browser.py.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import escape

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.lifecycle.consolidation import consolidate, merge
from apps.memories.models import AgentRecord, Memory, MemoryLink
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal
from tests.helpers.people import person, store
from tests.lifecycle.test_consolidation import CONFLICTS, DEPLOYS, OTHERS, STAGING

PAGE = "/admin/dashboard/consolidation/"
MERGE = "/admin/dashboard/consolidation/merge/"
RUN = {"namespace": "alpha", "threshold": "0.85", "run": "1"}


def _unmerge_url(memory_id) -> str:
    return f"/admin/dashboard/consolidation/unmerge/{memory_id}/"


def _change_url(memory_id) -> str:
    return f"/admin/memories/memory/{memory_id}/change/"


def _admin(namespace) -> Principal:
    return Principal(label="key:admin-1", agent_id="admin-1", role=Role.ADMIN,
                     namespace_id=namespace.pk, namespace=namespace)


@pytest.fixture
def corpus(alpha) -> dict[str, str]:
    """alpha's memories (one agent): two groups of paraphrases, three contradicting pairs,
    two unrelated; content -> id."""
    texts = [*STAGING, *DEPLOYS, *(t for a, b, _ in CONFLICTS for t in (a, b)), *OTHERS]
    return {text: str(store(alpha, text).pk) for text in texts}


def _unchanged() -> None:
    """Nothing was merged, linked or audited as a consolidation."""
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert not MemoryLink.objects.exists()
    assert not AuditEntry.objects.filter(operation__in=["memory.consolidate", "memory.unmerge",
                                                        "memory.conflicts"]).exists()


def _dry_run(client, **more) -> tuple[object, str]:
    response = client.get(PAGE, {**RUN, **more})
    assert response.status_code == 200, response.content[:2000]
    return response, response.content.decode()


def _proposal(response, corpus, texts):
    """The proposal (from the page's context) whose members are these texts."""
    wanted = {corpus[t] for t in texts}
    return next(p for p in response.context["proposals"] if {m.id for m in p.members} == wanted)


def _accept_query(proposal, survivor: str | None = None, **more) -> dict:
    """What the proposal's Accept form sends (a GET to the confirmation page)."""
    return {"namespace": "alpha", "threshold": "0.85", "members": [m.id for m in proposal.members],
            "survivor": survivor or proposal.survivor.id, **more}


# --- who may open the pages ---------------------------------------------------------------
def test_readers_and_agents_get_no_dashboard(alpha, corpus):
    member = corpus[STAGING[0]]
    for role in (Role.READER, Role.AGENT):
        client = person(f"member-{role.value}", alpha, role=role)
        for url in (PAGE, f"{PAGE}?namespace=alpha&run=1", MERGE, _unmerge_url(member)):
            response = client.get(url, follow=True)
            assert response.status_code == 403 and b"No dashboard access" in response.content
            assert b"staging database" not in response.content
        response = client.post(_unmerge_url(member), {"confirm": "yes"}, follow=True)
        assert response.status_code == 403
    _unchanged()


def test_another_tenants_namespace_and_memories_are_not_found(alice, bob, alpha, beta, corpus):
    assert bob.get(PAGE, {"namespace": "alpha"}).status_code == 404
    assert bob.get(PAGE, RUN).status_code == 404
    members = [corpus[t] for t in DEPLOYS]
    query = {"namespace": "alpha", "members": members, "survivor": members[0]}
    assert bob.get(MERGE, query).status_code == 404
    assert bob.post(f"{MERGE}?namespace=alpha&members={members[0]}&members={members[1]}"
                    f"&survivor={members[0]}", {"confirm": "yes"}).status_code == 404
    assert bob.get(_unmerge_url(members[0])).status_code == 404
    assert bob.post(_unmerge_url(members[0]), {"confirm": "yes"}).status_code == 404
    # alpha's ids named in beta, bob's namespace: not beta's memories, nothing to merge.
    refused = bob.get(MERGE, {**query, "namespace": "beta"})
    assert refused.status_code == 404 and 'id="mw-confirm-button"' not in refused.content.decode()
    # A person who manages beta but only reads alpha: alpha is not theirs here either.
    rhea = person("rhea", beta)
    set_role(alpha, get_user_model().objects.get(username="rhea"), Role.READER)
    assert rhea.get(PAGE, RUN).status_code == 404
    assert rhea.get(_unmerge_url(members[0])).status_code == 404
    # Bob's own page lists his namespace only, and no dry run ran for alpha.
    page = bob.get(PAGE).content.decode()
    assert '<option value="beta"' in page and '<option value="alpha"' not in page
    _unchanged()


def test_team_admins_and_system_admins_open_it(alice, root, alpha, beta, corpus):
    page = alice.get(PAGE).content.decode()
    assert 'id="consolidation-form"' in page and '<option value="alpha" selected' in page
    assert 'id="consolidation-summary"' not in page  # opening the page runs nothing
    response, page = _dry_run(root)
    assert len(response.context["proposals"]) == 2
    confirm = root.get(MERGE, _accept_query(response.context["proposals"][0]))
    assert confirm.status_code == 200 and 'id="mw-confirm-button"' in confirm.content.decode()
    assert root.get(PAGE, {"namespace": "beta", "run": "1"}).status_code == 200
    picker = root.get(PAGE).content.decode()
    assert '<option value="alpha"' in picker and '<option value="beta"' in picker


# --- the dry run ---------------------------------------------------------------------------
def test_a_dry_run_shows_the_groups_side_by_side_and_the_conflicts(alice, corpus):
    response, page = _dry_run(alice)
    groups = {frozenset(m.id for m in p.members) for p in response.context["proposals"]}
    assert groups == {frozenset(corpus[t] for t in STAGING), frozenset(corpus[t] for t in DEPLOYS)}
    assert "Dry run over 13 memories at threshold 0.85: 2 proposals, 3 conflicts." in page
    assert "Nothing was changed" in page
    staging = _proposal(response, corpus, STAGING)
    assert staging.survivor.text in STAGING and staging.members[0] is staging.survivor
    similarities = staging.to_survivor  # each other member's similarity to the survivor
    assert set(similarities) == {m.id for m in staging.members} - {staging.survivor.id}
    assert all(0.77 <= value <= 1 for value in similarities.values())
    block = re.search(rf'<section class="module mw-proposal" id="proposal-{staging.key}".*?</section>',
                      page, re.S).group(0)
    # Side by side: each member's text, agent, stored date, similarity; the survivor marked.
    cards = re.findall(r'<li class="mw-member( mw-survivor)?" data-memory="([^"]+)">(.*?)</li>',
                       block, re.S)
    assert [memory_id for _, memory_id, _ in cards] == [m.id for m in staging.members]
    assert [bool(marked) for marked, _, _ in cards] == [True, False, False]
    today = timezone.now().strftime("%Y-%m-%d")
    for marked, memory_id, card in cards:
        text = next(t for t, i in corpus.items() if i == memory_id)
        assert f'<p class="mw-member-text">{escape(text)}</p>' in card
        assert '<span class="mw-member-agent">agent-1</span>' in card and today in card
        assert f'href="{_change_url(memory_id)}"' in card
        radio = re.search(r'<input type="radio" name="survivor" value="([^"]+)"( checked)?', card)
        assert radio.group(1) == memory_id and bool(radio.group(2)) == bool(marked)
        if not marked:
            shown = re.search(r'<span class="mw-similarity">([0-9.]+)</span>', card).group(1)
            assert shown == f"{similarities[memory_id]:.3f}"
    # The merged text is offered on the confirmation to edit, or the kept memory after merging.
    assert "offered on the confirmation (Accept…) to edit; or edit the kept memory after merging" in block
    assert f'href="{_change_url(staging.survivor.id)}"' in block
    # Accept is a form to the confirmation page; Reject a link that hides it on this page.
    assert f'action="{MERGE}"' in block and 'method="get"' in block
    assert re.search(r'<a class="button mw-reject" href="[^"]*hide=' + staging.key, block)
    assert "proposals are not stored on the server" in page
    # The conflicts: both texts and what differs, never among the proposals.
    conflicts = re.search(r'id="consolidation-conflicts".*?</ul>', page, re.S).group(0)
    for a, b, facet in CONFLICTS:
        row = re.search(rf'<li class="mw-conflict" data-members="({corpus[a]} {corpus[b]}|'
                        rf'{corpus[b]} {corpus[a]})">(.*?)</li>', conflicts, re.S)
        assert row, (a, b)
        assert escape(a) in row.group(2) and escape(b) in row.group(2)
        assert facet in re.search(r'<strong class="mw-differs">([^<]+)</strong>', row.group(2)).group(1)
    _unchanged()


def test_the_filters_narrow_the_dry_run_and_bad_ones_are_said(alice, alpha, settings):
    first = {str(store(alpha, text).pk) for text in STAGING}
    other = {str(store(alpha, text, agent_id="agent-2").pk) for text in DEPLOYS}
    response, _ = _dry_run(alice, agent="agent-2")
    assert [{m.id for m in p.members} for p in response.context["proposals"]] == [other]
    response, page = _dry_run(alice, agent="agent-1")
    assert [{m.id for m in p.members} for p in response.context["proposals"]] == [first]
    assert "Dry run over 3 memories" in page
    for bad, field in [({"threshold": "0.2"}, "threshold"), ({"threshold": "high"}, "threshold"),
                       ({"agent": "no spaces allowed"}, "agent")]:
        refused = alice.get(PAGE, {**RUN, **bad})
        assert refused.status_code == 400, bad
        assert refused.context["form"].errors[field], bad
        assert 'id="consolidation-summary"' not in refused.content.decode()
    # More candidates than a request may consider: said, nothing proposed.
    settings.MEMORYWEB_CONSOLIDATE_MAX = 3
    too_many = alice.get(PAGE, RUN)
    assert too_many.status_code == 400 and "MEMORYWEB_CONSOLIDATE_MAX" in too_many.content.decode()
    _unchanged()


def test_texts_are_shown_as_text(alice, alpha):
    texts = ["The <b>release</b> notes live in <script>alert(1)</script> docs/notes.md.",
             "Note: the <b>release</b> notes live in <script>alert(1)</script> docs/notes.md."]
    for text in texts:
        store(alpha, text)
    response, page = _dry_run(alice)
    assert len(response.context["proposals"]) == 1
    assert "<script>alert(1)</script>" not in page and "<b>release" not in page
    for text in texts:
        assert f'<p class="mw-member-text">{escape(text)}</p>' in page


def test_reject_hides_a_proposal_on_the_page_only(alice, corpus):
    response, page = _dry_run(alice)
    staging = _proposal(response, corpus, STAGING)
    href = unescape(re.search(rf'<a class="button mw-reject" href="([^"]+hide={staging.key}[^"]*)"',
                              page).group(1))
    hidden = alice.get(href)
    assert hidden.status_code == 200
    assert [{m.id for m in p.members} for p in hidden.context["proposals"]] == [
        {corpus[t] for t in DEPLOYS}]
    text = hidden.content.decode()
    assert f'id="proposal-{staging.key}"' not in text and "1 proposal hidden" in text
    again = unescape(re.search(r'<a id="consolidation-show-hidden" href="([^"]+)"', text).group(1))
    assert len(alice.get(again).context["proposals"]) == 2
    # The Accept forms carry the hidden keys, so the page after a merge keeps them hidden;
    # anything else in hide= is ignored.
    assert f'<input type="hidden" name="hide" value="{staging.key}">' in text
    odd = alice.get(href + '&hide="><script>x</script>&hide=zz')
    assert odd.context["hide"] == [staging.key] and "<script>x" not in odd.content.decode()
    _unchanged()


# --- accept --------------------------------------------------------------------------------
def test_accept_asks_first_then_merges_and_returns_to_a_fresh_dry_run(alice, corpus):
    response, _ = _dry_run(alice)
    staging = _proposal(response, corpus, STAGING)
    query = _accept_query(staging)
    confirm = alice.get(MERGE, query)
    text = unescape(confirm.content.decode())
    assert confirm.status_code == 200 and 'id="mw-confirm"' in text
    assert f"Merge 3 memories in alpha, keeping “{staging.survivor.text[:40]}" in text
    assert ">Merge 3 memories</button>" in text
    assert "Edit the merged text below" in text and "Unmerge" in text
    assert re.search(r'<textarea name="text" id="mw-text"[^>]*>' + re.escape(
        staging.survivor.text) + "</textarea>", text)
    for member in staging.members:
        assert member.text in text
    _unchanged()
    # A POST without the confirmation's own field asks again and merges nothing.
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    assert 'id="mw-confirm"' in alice.post(url).content.decode()
    _unchanged()

    done = alice.post(url, {"confirm": "yes"}, follow=True)
    back = urlsplit(done.redirect_chain[-1][0])
    assert back.path == PAGE and parse_qs(back.query) == {"namespace": ["alpha"],
                                                         "threshold": ["0.85"], "run": ["1"]}
    others = {m.id for m in staging.members} - {staging.survivor.id}
    assert {str(pk) for pk in Memory.objects.filter(superseded_by=staging.survivor.id)
            .values_list("pk", flat=True)} == others
    entry = AuditEntry.objects.get(operation="memory.consolidate")
    assert entry.actor == "user:alice" and entry.summary["survivor"] == staging.survivor.id
    page = done.content.decode()
    assert "Merged 3 memories in alpha" in unescape(page)
    assert f'href="{_change_url(staging.survivor.id)}' in page  # the kept memory, linked
    # The fresh dry run shows what is left.
    assert [{m.id for m in p.members} for p in done.context["proposals"]] == [
        {corpus[t] for t in DEPLOYS}]
    assert not MemoryLink.objects.filter(relation="conflicts_with").exists()


def test_the_merged_text_edited_on_the_confirmation_is_what_the_kept_memory_says(alice,
                                                                                   corpus):
    response, _ = _dry_run(alice)
    deploys = _proposal(response, corpus, DEPLOYS)
    confirm = alice.get(MERGE, _accept_query(deploys))
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    merged_text = "Production deploys: every Tuesday afternoon."
    done = alice.post(url, {"confirm": "yes", "text": merged_text}, follow=True)
    assert done.status_code == 200
    kept = Memory.objects.get(pk=deploys.survivor.id)
    assert kept.content == merged_text and kept.version == 2
    others = {m.id for m in deploys.members} - {deploys.survivor.id}
    assert {str(pk) for pk in Memory.objects.filter(superseded_by=kept.pk)
            .values_list("pk", flat=True)} == others
    edit = AuditEntry.objects.get(operation="memory.update")
    assert edit.record_ids == [deploys.survivor.id] and edit.summary["fields"] == ["content"]
    assert "now says the merged text" in unescape(done.content.decode())
    # The text left as it was (spacing aside) is no edit.
    staging = _proposal(_dry_run(alice)[0], corpus, STAGING)
    confirm = alice.get(MERGE, _accept_query(staging))
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    alice.post(url, {"confirm": "yes", "text": f"  {staging.survivor.text} "})
    assert Memory.objects.get(pk=staging.survivor.id).version == 1
    assert AuditEntry.objects.filter(operation="memory.update").count() == 1


def test_a_refused_merged_text_merges_nothing(alice, corpus):
    response, _ = _dry_run(alice)
    deploys = _proposal(response, corpus, DEPLOYS)
    confirm = alice.get(MERGE, _accept_query(deploys))
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    refused = alice.post(url, {"confirm": "yes", "text": "   "})
    assert refused.status_code == 400 and 'id="mw-confirm-error"' in refused.content.decode()
    assert "content" in unescape(refused.content.decode())
    _unchanged()
    assert Memory.objects.get(pk=deploys.survivor.id).version == 1


def test_the_radio_chooses_another_survivor(alice, corpus):
    response, _ = _dry_run(alice)
    deploys = _proposal(response, corpus, DEPLOYS)
    chosen = next(m.id for m in deploys.members if m.id != deploys.survivor.id)
    query = _accept_query(deploys, survivor=chosen)
    confirm = alice.get(MERGE, query)
    chosen_text = next(m.text for m in deploys.members if m.id == chosen)
    assert f"keeping “{chosen_text[:40]}" in unescape(confirm.content.decode())
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    alice.post(url, {"confirm": "yes"})
    assert Memory.objects.get(pk=deploys.survivor.id).superseded_by_id is not None
    assert str(Memory.objects.get(pk=deploys.survivor.id).superseded_by_id) == chosen
    assert Memory.objects.get(pk=chosen).superseded_by_id is None


def test_a_proposal_that_changed_or_makes_no_sense_is_refused_on_the_confirmation(alice, alpha,
                                                                                  corpus):
    deploys = [corpus[t] for t in DEPLOYS]
    cases = [
        ({"members": deploys, "survivor": corpus[OTHERS[0]]}, 400),  # survivor not a member
        ({"members": deploys[:1], "survivor": deploys[0]}, 400),  # one member
        ({"members": [deploys[0], "not-a-uuid"], "survivor": deploys[0]}, 400),
        ({"members": [deploys[0], "00000000-0000-0000-0000-000000000000"],
          "survivor": deploys[0]}, 404),
    ]
    for query, status in cases:
        response = alice.get(MERGE, {"namespace": "alpha", **query})
        assert response.status_code == status, (query, response.status_code)
        assert 'id="mw-confirm-error"' in response.content.decode()
        assert 'id="mw-confirm-button"' not in response.content.decode()
    # Already merged since the dry run: said, and a confirming POST merges nothing more.
    merge(_admin(alpha), "alpha", deploys, deploys[0])
    url = f"{MERGE}?namespace=alpha&members={deploys[0]}&members={deploys[1]}&survivor={deploys[1]}"
    response = alice.get(url)
    assert response.status_code == 409 and "already merged" in response.content.decode()
    posted = alice.post(url, {"confirm": "yes"})
    assert posted.status_code == 409 and 'id="mw-confirm-error"' in posted.content.decode()
    assert str(Memory.objects.get(pk=deploys[1]).superseded_by_id) == deploys[0]
    assert AuditEntry.objects.filter(operation="memory.consolidate").count() == 1


def test_an_archived_namespace_is_not_merged(alice, alpha, corpus):
    alpha.archived_at = timezone.now()
    alpha.save(update_fields=["archived_at"])
    deploys = [corpus[t] for t in DEPLOYS]
    url = f"{MERGE}?namespace=alpha&members={deploys[0]}&members={deploys[1]}&survivor={deploys[0]}"
    page = alice.get(url).content.decode()
    assert "archived" in page and 'id="mw-confirm-button"' not in page
    assert alice.post(url, {"confirm": "yes"}).status_code == 409
    _unchanged()


def test_a_get_never_writes_and_every_post_needs_its_csrf_token(alpha, corpus):
    strict = person("carla", alpha)
    strict.handler.enforce_csrf_checks = True
    deploys = [corpus[t] for t in DEPLOYS]
    merge_url = (f"{MERGE}?namespace=alpha&members={deploys[0]}&members={deploys[1]}"
                 f"&survivor={deploys[0]}")
    for url in (f"{PAGE}?namespace=alpha&run=1&confirm=yes", f"{merge_url}&confirm=yes",
                f"{_unmerge_url(deploys[0])}?confirm=yes"):
        assert strict.get(url).status_code in (200, 409), url
    _unchanged()
    assert strict.post(merge_url, {"confirm": "yes"}).status_code == 403
    _unchanged()
    merge(_admin(alpha), "alpha", deploys, deploys[0])
    assert strict.post(_unmerge_url(deploys[1]), {"confirm": "yes"}).status_code == 403
    assert str(Memory.objects.get(pk=deploys[1]).superseded_by_id) == deploys[0]
    assert not AuditEntry.objects.filter(operation="memory.unmerge").exists()


# --- lineage on the memory page ------------------------------------------------------------
def test_the_memory_page_shows_lineage_and_unmerges(alice, alpha, corpus):
    staging = [corpus[t] for t in STAGING]
    survivor, first, second = staging
    merge(_admin(alpha), "alpha", staging, survivor)

    page = alice.get(_change_url(first)).content.decode()
    nav = re.search(r'<nav class="mw-tabs".*?</nav>', page, re.S).group(0)
    assert '<a id="mw-tab-lineage" href="#lineage" data-mw-tab>Lineage' in nav
    notice = re.search(r'id="mw-merged-into".*?</p>', page, re.S).group(0)
    assert "Merged into" in notice and f'href="{_change_url(survivor)}"' in notice
    assert escape(STAGING[0]) in notice
    lineage = re.search(r'<section class="module mw-section mw-panel" id="lineage">.*?</section>',
                        page, re.S).group(0)
    assert f'href="{_unmerge_url(first)}"' in lineage and "Unmerge…" in lineage

    kept = alice.get(_change_url(survivor)).content.decode()
    merged = re.search(r'id="lineage-merged".*?</ul>', kept, re.S).group(0)
    assert set(re.findall(r'<li data-memory="([^"]+)">', merged)) == {first, second}
    for memory_id in (first, second):
        assert f'href="{_change_url(memory_id)}"' in merged
    assert f'href="{_unmerge_url(survivor)}"' in kept and "Unmerge all…" in kept
    assert 'id="mw-merged-into"' not in kept

    # Unmerge one: a confirmation first, then it alone is current again.
    confirm = alice.get(_unmerge_url(first))
    text = unescape(confirm.content.decode())
    assert 'id="mw-confirm"' in text and f"Unmerge “{STAGING[1][:40]}" in text
    assert ">Unmerge this memory</button>" in text
    assert Memory.objects.get(pk=first).superseded_by_id is not None
    done = alice.post(_unmerge_url(first), {"confirm": "yes"}, follow=True)
    assert done.redirect_chain[-1][0] == _change_url(first)
    assert "1 memory is current again" in done.content.decode()
    assert Memory.objects.get(pk=first).superseded_by_id is None
    assert Memory.objects.get(pk=second).superseded_by_id is not None
    assert 'id="mw-merged-into"' not in done.content.decode()

    # Unmerge all from the survivor.
    confirm = unescape(alice.get(_unmerge_url(survivor)).content.decode())
    assert "Unmerge the 1 memory merged into “" in confirm and ">Unmerge 1 memory</button>" in confirm
    alice.post(_unmerge_url(survivor), {"confirm": "yes"})
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    entries = AuditEntry.objects.filter(operation="memory.unmerge")
    assert entries.count() == 2 and {e.actor for e in entries} == {"user:alice"}
    assert 'id="mw-tab-lineage"' not in alice.get(_change_url(survivor)).content.decode()
    # Nothing left to unmerge: said, no button; a confirming POST changes nothing.
    refused = alice.get(_unmerge_url(survivor))
    assert refused.status_code == 409 and 'id="mw-confirm-button"' not in refused.content.decode()
    assert alice.post(_unmerge_url(survivor), {"confirm": "yes"}).status_code == 409
    assert AuditEntry.objects.filter(operation="memory.unmerge").count() == 2


def test_the_memory_page_lists_its_conflicts_both_ways(alice, alpha, corpus):
    consolidate(_admin(alpha), "alpha", {"dry_run": False, "threshold": 0.85})
    for a, b, facet in CONFLICTS:
        for this, other in ((a, b), (b, a)):
            page = alice.get(_change_url(corpus[this])).content.decode()
            block = re.search(r'id="lineage-conflicts".*?</ul>', page, re.S).group(0)
            row = re.search(rf'<li data-memory="{corpus[other]}">(.*?)</li>', block, re.S)
            assert row, (this, other)
            assert f'href="{_change_url(corpus[other])}"' in row.group(1)
            assert escape(other) in row.group(1) and facet in row.group(1)
    plain = alice.get(_change_url(corpus[OTHERS[0]])).content.decode()
    assert 'id="mw-tab-lineage"' not in plain and 'id="lineage"' not in plain


def test_the_lineage_block_takes_a_bounded_number_of_queries(alice, alpha,
                                                             django_assert_max_num_queries):
    texts = [f"Fact number {n} about the quarterly report." for n in range(12)]
    ids = [str(store(alpha, text).pk) for text in texts]
    admin = _admin(alpha)
    merge(admin, "alpha", ids[:2], ids[0])
    MemoryLink.objects.create(namespace=alpha, source_id=ids[0], target_id=ids[2],
                              relation="conflicts_with", differs_in=["number"], created_by="test")
    with django_assert_max_num_queries(60) as few:
        alice.get(_change_url(ids[0]))
    merge(admin, "alpha", [ids[0], *ids[3:8]], ids[0])
    for other in ids[8:]:
        MemoryLink.objects.create(namespace=alpha, source_id=ids[0], target_id=other,
                                  relation="conflicts_with", differs_in=["number"],
                                  created_by="test")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = alice.get(_change_url(ids[0])).content.decode()
    assert len(re.findall(r'<li data-memory=', re.search(r'id="lineage-merged".*?</ul>', page,
                                                          re.S).group(0))) == 6
    assert len(re.findall(r'<li data-memory=', re.search(r'id="lineage-conflicts".*?</ul>', page,
                                                          re.S).group(0))) == 5
    with django_assert_max_num_queries(len(few.captured_queries)):
        alice.get(_change_url(ids[4]))  # a superseded one: merged into, and its survivor


# --- the way in ----------------------------------------------------------------------------
def test_the_tools_and_the_overview_link_consolidation(alice, alpha):
    index = alice.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in index and ">Consolidation<" in index
    overview = alice.get("/admin/dashboard/overview/").content.decode()
    assert f'href="{PAGE}?namespace=alpha"' in overview


def test_where_the_namespace_asks_for_summaries_the_confirmation_offers_one(alice, alpha,
                                                                           corpus, provider_settings,
                                                                           upstream):
    """``consolidation.merged_text: summary``: the dry run asks the summarizer nothing (the
    page shows the members); the confirmation offers its text of the group (the fake
    upstream's quoting model: each member's sentence, the kept one's first) to edit."""
    alpha.consolidation = {"merged_text": "summary"}
    alpha.save()
    response, _ = _dry_run(alice)
    assert not upstream.requests
    deploys = _proposal(response, corpus, DEPLOYS)
    confirm = alice.get(MERGE, _accept_query(deploys))
    assert confirm.status_code == 200 and len(upstream.requests) == 1
    page = unescape(confirm.content.decode())
    other = next(m for m in deploys.members if m.id != deploys.survivor.id)
    offered = f"{deploys.survivor.text}\n{other.text}"
    assert re.search(r"<textarea[^>]*>\s*" + re.escape(offered) + r"\s*</textarea>", page)
    assert "written by the summarizer" in page
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    alice.post(url, {"confirm": "yes", "text": offered})
    kept = Memory.objects.get(pk=deploys.survivor.id)
    assert kept.content == offered
    # Accepted as offered: the summarizer's text (an unmerge takes it back), no correction.
    change = kept.versions.get(changes__content__by="merge_text").changes["content"]
    assert change["summarizer"].startswith("openai:")
    assert not AgentRecord.objects.filter(corrected__gt=0).exists()
