"""The consolidation review shows the tags the kept memory will have (issue 21 item 6 and
docs/lifecycle-next.md): the proposal's ``tags`` beside the survivor, what it gains from
the others, each other member's own tags, and the same on the confirmation page; after
the merge the survivor holds exactly those."""

from __future__ import annotations

import re
from html import unescape

from apps.memories.models import Memory
from tests.helpers.people import store
from tests.lifecycle.test_consolidation import STAGING

PAGE = "/admin/dashboard/consolidation/"
MERGE = "/admin/dashboard/consolidation/merge/"
RUN = {"namespace": "alpha", "threshold": "0.85", "run": "1"}
TAGS = [["db", "ops"], ["staging"], []]


def _corpus(alpha) -> dict[str, str]:
    return {text: str(store(alpha, text, tags=tags).pk) for text, tags in zip(STAGING, TAGS, strict=True)}


def test_the_survivor_shows_its_tags_after_merging(alice, alpha):
    corpus = _corpus(alpha)
    response = alice.get(PAGE, RUN)
    assert response.status_code == 200
    proposal = next(p for p in response.context["proposals"]
                    if {m.id for m in p.members} == set(corpus.values()))
    survivor = Memory.objects.get(pk=proposal.survivor.id)
    others = [Memory.objects.get(pk=m.id) for m in proposal.members if not m.survivor]
    expected = list(survivor.tags) + sorted({t for m in others for t in m.tags} - set(survivor.tags))
    assert proposal.tags == expected and set(expected) == {"db", "ops", "staging"}
    page = response.content.decode()
    block = re.search(rf'id="proposal-{proposal.key}".*?</section>', page, re.S).group(0)
    kept = re.search(r'<li class="mw-member mw-survivor"[^>]*>(.*?)</li>', block, re.S).group(1)
    shown = re.search(r'<strong class="mw-tags-after">([^<]*)</strong>', kept).group(1)
    assert shown == ", ".join(expected)
    gained = [t for t in expected if t not in survivor.tags]
    assert gained  # no member holds all three
    assert re.search(r'<span class="mw-tags-gained">([^<]*)</span>', kept).group(1) == ", ".join(gained)
    # Each other member shows its own tags (none: nothing).
    for member in others:
        card = re.search(rf'<li class="mw-member" data-memory="{member.pk}">(.*?)</li>', block,
                         re.S).group(1)
        assert ("mw-member-tags" in card) == bool(member.tags)
        if member.tags:
            assert f"tags: {', '.join(member.tags)}" in card

    # The confirmation says the same, and the merge gives the survivor exactly those tags.
    query = {"namespace": "alpha", "threshold": "0.85", "members": [m.id for m in proposal.members],
             "survivor": proposal.survivor.id}
    confirm = unescape(alice.get(MERGE, query).content.decode())
    assert f"Tags after merging: {', '.join(expected)}" in confirm
    assert f"it gains {', '.join(gained)} from the others" in confirm
    alice.post(f"{MERGE}?namespace=alpha&threshold=0.85&" + "&".join(
        f"members={m.id}" for m in proposal.members) + f"&survivor={proposal.survivor.id}",
        {"confirm": "yes"})
    survivor.refresh_from_db()
    assert list(survivor.tags) == expected


def test_another_survivor_chosen_gets_the_same_tags_in_its_own_order(alice, alpha):
    corpus = _corpus(alpha)
    untagged = corpus[STAGING[2]]
    members = list(corpus.values())
    confirm = unescape(alice.get(MERGE, {"namespace": "alpha", "members": members,
                                         "survivor": untagged}).content.decode())
    assert "Tags after merging: db, ops, staging; it gains db, ops, staging from the others" in confirm


def test_no_tags_anywhere_says_none(alice, alpha):
    ids = [str(store(alpha, text).pk) for text in STAGING]
    page = alice.get(PAGE, RUN).content.decode()
    assert re.search(r'Tags after merging: <span class="mw-meta">none</span>', page)
    confirm = unescape(alice.get(MERGE, {"namespace": "alpha", "members": ids,
                                         "survivor": ids[0]}).content.decode())
    assert "Tags after merging: none (no member has a tag)." in confirm
