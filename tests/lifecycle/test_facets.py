"""What two alike memories may disagree on (apps/lifecycle/facets.py), and the grouping's
rules on pairs and groups (apps/lifecycle/grouping.py), without a server: the cases a
review found merged, each kept apart now, and paraphrases still merged."""

from __future__ import annotations

import numpy as np
import pytest

from apps.lifecycle import grouping
from apps.lifecycle.facets import differences, facets


@pytest.mark.parametrize(("a", "b", "differs"), [
    ("The API timeout is 30 seconds.", "The API timeout is 45 seconds.", "number"),
    ("The API timeout is 5 minutes.", "The API timeout is 5 hours.", "number"),
    ("Time zone for Dana (Bangalore): UTC.", "time zone for dana (bangalore): utc-8.", "number"),
    ("The primary DB is db-2.", "The primary DB is db-7.", "number"),
    ("Release is on March 3, 2024.", "Release is on 2024-03-04.", "date"),
    ("Standup is at 9:30.", "Standup is at 10:30.", "date"),
    ("Maria leads the billing migration.", "Anna leads the billing migration.", "name"),
    ("We use Redis for caching.", "We do not use Redis for caching.", "negation"),
    ("Feature flags are enabled in staging.", "Feature flags are disabled in staging.", "contrast"),
    ("Builds are fast on the new runners.", "Builds are slow on the new runners.", "contrast"),
    ("The deploy happens before the freeze.", "The deploy happens after the freeze.", "contrast"),
    ("Reports go out weekly.", "Reports go out monthly.", "contrast"),
    ("Мария руководит проектом.", "Анна руководит проектом.", "name"),
    ("Мы используем Redis.", "Мы не используем Redis.", "negation"),
    ("我们使用Redis。", "我们不使用Redis。", "negation"),
])
def test_contradicting_pairs_differ(a, b, differs):
    assert differs in differences(facets(a), facets(b))


@pytest.mark.parametrize(("a", "b"), [
    ("The API timeout is 30 seconds.", "Note: the timeout of the API is 30 s."),
    ("Renewal on Aug 10, 2025.", "It renews on 2025-08-10 (confirmed)."),
    ("Elif attended the review on 10 Nov 2026.", "Elif joined the review held on 2026-11-10."),
    ("Amara is out for 3 days from June 28.", "amara is out 3d from jun 28."),
    ("We promise 99.99% availability.", "As discussed, we promise 99.99 percent availability."),
    ("Mateo's birthday is on May 24.", "Mateo celebrates their birthday on 24 May."),
    ("Every Thu at 12:00 Farah meets Kofi for a 1:1.", "Every Thursday at 12:00, Farah meets "
     "Kofi for their one-on-one."),
])
def test_paraphrases_do_not_differ(a, b):
    assert differences(facets(a), facets(b)) == []


def test_a_number_of_thousands_of_digits_is_read_as_text():
    huge = "9" * 5000
    assert huge in facets(f"The answer is {huge}.").numbers


def _find(texts: list[str], vectors: np.ndarray, synonyms: dict, threshold: float = 0.8,
          partitions: list | None = None, tags: list | None = None) -> grouping.Found:
    candidates = [grouping.Candidate(str(i), t, partitions[i] if partitions else (), (i,),
                                     frozenset(tags[i]) if tags else frozenset())
                  for i, t in enumerate(texts)]
    everyone = [[(str(j), 1.0) for j in range(len(texts))]]

    def neighbours(rows):
        return everyone * len(rows)

    def term_similarity(pairs):
        return [synonyms.get(pair, synonyms.get(pair[::-1], 0.0)) for pair in pairs]

    return grouping.find_groups(candidates, vectors, neighbours, threshold, term_similarity)


def test_complete_linkage_keeps_a_refused_swap_apart_through_a_vaguer_memory():
    texts = ["Releases ship on the stable channel.", "Releases ship on the beta channel.",
             "Releases ship on the channel."]
    vectors = np.ones((3, 4), dtype=np.float32) / 2  # every pair alike to the model
    found = _find(texts, vectors, {("stable", "beta"): 0.3})
    assert all({"0", "1"} - set(group.members) for group in found.groups)


def test_groups_never_cross_a_partition_and_long_texts_need_the_same_words():
    texts = ["The office is closed on public holidays.",
             "Office closed on public holidays."]
    vectors = np.ones((2, 4), dtype=np.float32) / 2
    assert len(_find(texts, vectors, {}).groups) == 1
    assert _find(texts, vectors, {}, partitions=[("fact", "a"), ("fact", "b")]).groups == []
    # Tags: merged only when nested, into the member that holds them all.
    nested = _find(texts, vectors, {}, tags=[{"ops"}, {"ops", "office"}]).groups
    assert len(nested) == 1 and nested[0].survivor == "1"
    assert _find(texts, vectors, {}, tags=[{"ops"}, {"office"}]).groups == []
    start = "Incident report. " + "The service degraded under load for an hour. " * 30
    long = [start + "Root cause: a bad deploy.", start + "Root cause: a disk filled up on the "
            "primary database host after log rotation stopped working weeks ago."]
    assert _find(long, np.ones((2, 4), dtype=np.float32) / 2, {}).groups == []
