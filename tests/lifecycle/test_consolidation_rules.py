"""The grouping rules added for recall and precision (apps/lifecycle/grouping.py,
facets.py; docs/lifecycle.md, "How groups are found"), without a server: each rule with a
pair or group it now decides, and the hard-negative kinds (number, name, date, negation)
never merged, whatever the model says and whichever member bridges them."""

from __future__ import annotations

import numpy as np
import pytest

from apps.lifecycle import grouping
from apps.lifecycle.facets import differences, facets, reversal


def _find(texts: list[str], synonyms: dict | None = None, default: float = 0.0,
          vectors: np.ndarray | None = None) -> grouping.Found:
    """Groups among ``texts``, every one a neighbour of every other; alike to the model
    (cosine 1) unless ``vectors`` says otherwise; two words' similarity from ``synonyms``
    (either order), else ``default``."""
    candidates = [grouping.Candidate(str(i), text, (), (i,)) for i, text in enumerate(texts)]
    if vectors is None:
        vectors = np.ones((len(texts), 4), dtype=np.float32) / 2
    everyone = [[(str(j), 1.0) for j in range(len(texts))]]
    synonyms = synonyms or {}

    def term_similarity(pairs):
        return [synonyms.get(pair, synonyms.get(pair[::-1], default)) for pair in pairs]

    return grouping.find_groups(candidates, vectors, lambda rows: everyone * len(rows), 0.8,
                                term_similarity)


def _together(found: grouping.Found, *members: str) -> bool:
    return any(set(members) <= set(group.members) for group in found.groups)


def test_a_dotted_identifier_is_a_name():
    a = facets("The TLS certificate for api.acme.io expires on 2025-03-01.")
    b = facets("The TLS certificate for app.acme.io expires on 2025-03-01.")
    assert "name" in differences(a, b)
    same = facets("On 2025-03-01 the TLS cert of api.acme.io expires (confirmed).")
    assert differences(a, same) == []
    assert {"node.js", "user_id"} <= facets("Pin node.js and rename user_id.").names
    assert not {"e.g", "a.m"} & facets("Use a cache, e.g. Redis, before 9 a.m. daily.").names
    # the model may rate the two domains alike: they are still two names, never merged
    texts = [a_text := "The TLS certificate for api.acme.io expires on 2025-03-01.",
             a_text.replace("api.", "app.")]
    assert _find(texts, default=0.9).groups == []


@pytest.mark.parametrize(("a", "b"), [
    ("Wen is Felix's manager.", "Felix is Wen's manager."),
    ("Keiko prefers email over Slack.", "Keiko prefers Slack over email."),
    ("The staging database replicates to the production database.",
     "The production database replicates to the staging database."),
])
def test_two_words_that_changed_places_are_never_merged(a, b):
    assert reversal(facets(a), facets(b))
    found = _find([a, b], default=1.0)
    assert found.groups == []


def test_words_joined_by_and_may_change_places():
    a, b = "Ana and Ben met the auditors on Monday.", "Ben and Ana met the auditors on Monday."
    assert not reversal(facets(a), facets(b))
    assert _together(_find([a, b]), "0", "1")


def test_a_member_joins_through_the_one_it_nearly_repeats():
    # The model rates "last" / "strong" apart (a rephrasing's words, not in place), so
    # complete linkage kept the third out; it repeats the second, which the first repeats.
    texts = ["Viktor prefers dark mode per the last sync.", "Viktor prefers dark mode.",
             "Viktor has a strong preference for dark mode."]
    found = _find(texts)
    assert len(found.groups) == 1 and found.groups[0].members == ["0", "1", "2"]


def test_a_swap_in_place_the_model_refuses_is_another_value_through_any_bridge():
    texts = ["Releases ship on the stable channel.", "Releases ship on the beta channel.",
             "Releases ship on the channel.", "Note: releases ship on the stable channel."]
    found = _find(texts, {("stable", "beta"): 0.3})
    assert not _together(found, "0", "1") and not _together(found, "1", "3")


def test_a_rephrasing_that_substitutes_a_value_refused_in_place_is_not_merged():
    texts = ["The search service runs 4 replicas in staging.",
             "The search service runs 4 replicas in production.",
             "Production cluster: our search service is running 4 replicas on main nodes."]
    found = _find(texts, {("staging", "production"): 0.2})
    assert not _together(found, "0", "1") and not _together(found, "0", "2")
    assert _together(found, "1", "2")


HARD_NEGATIVES = {
    "number": ("The API timeout in staging is 30 seconds.", "The API timeout in staging is 45 seconds."),
    "name": ("Maria leads the billing migration.", "Anna leads the billing migration."),
    "date": ("The Atlas launch review is on March 3, 2025.", "The Atlas launch review is on March 4, 2025."),
    "negation": ("We use Redis for session caching.", "We do not use Redis for session caching."),
}


@pytest.mark.parametrize("kind", sorted(HARD_NEGATIVES))
def test_hard_negatives_never_merge_even_with_a_permissive_model_and_bridges(kind):
    x, y = HARD_NEGATIVES[kind]
    texts = [x, y, f"Note: {x}", f"{y} (confirmed)", f"Remember that {x[0].lower()}{x[1:]}"]
    found = _find(texts, default=1.0)  # every swapped word a synonym to the model
    assert kind in differences(facets(x), facets(y))
    sides = {"0": "x", "2": "x", "4": "x", "1": "y", "3": "y"}
    for group in found.groups:
        assert len({sides[m] for m in group.members}) == 1, (kind, group.members)
    assert _together(found, "0", "2", "4") and _together(found, "1", "3")
