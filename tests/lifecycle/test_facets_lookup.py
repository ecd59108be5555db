"""The pair checks' shortcuts in apps/lifecycle/facets.py say exactly what the rules they
replace say: the contrast check looks its words up in ``OPPOSITE_OF`` instead of walking
``OPPOSITES`` for every pair, and a text's content words and rest words are computed once
(a 100,000-memory dry run checks a few hundred thousand pairs)."""

from __future__ import annotations

import random
from dataclasses import replace

from apps.lifecycle.facets import (
    MONTHS,
    OPPOSITES,
    WEEKDAYS,
    Facets,
    content_words,
    differences,
    facets,
    rest_words,
    with_known_names,
)
from apps.memories.lexical import STOPWORDS


def _contrast_by_the_list(a: frozenset[str], b: frozenset[str]) -> bool:
    """The rule as written before the look-up table."""
    return any((x in a and y in b and x not in b and y not in a)
               or (y in a and x in b and y not in b and x not in a) for x, y in OPPOSITES)


def _words(rng: random.Random, vocabulary: list[str]) -> frozenset[str]:
    return frozenset(rng.sample(vocabulary, rng.randint(0, 6)))


def test_the_contrast_look_up_agrees_with_the_list_on_random_texts():
    rng = random.Random(21)
    # a few of the pairs (so texts often hold both sides), words of several pairs
    # ("more": less, fewer), and words of none
    chosen = rng.sample(OPPOSITES, 8) + [p for p in OPPOSITES if "more" in p or "start" in p]
    vocabulary = [*sorted({w for pair in chosen for w in pair}), "the", "api", "staging"]
    empty = frozenset()
    agreed = contrasts = 0
    for _ in range(20_000):
        a, b = _words(rng, vocabulary), _words(rng, vocabulary)
        expected = _contrast_by_the_list(a, b)
        got = "contrast" in differences(Facets(empty, empty, empty, False, a),
                                        Facets(empty, empty, empty, False, b))
        assert got == expected, (sorted(a), sorted(b))
        agreed += 1
        contrasts += expected
    assert agreed == 20_000 and 2_000 < contrasts < 18_000  # both outcomes well covered


def test_a_word_and_its_opposite_in_the_same_text_is_no_contrast():
    on_off = facets("The switch is on, then off.")
    assert "contrast" not in differences(on_off, facets("The switch is off."))
    assert "contrast" in differences(facets("The switch is on."), facets("The switch is off."))


TEXTS = ["The staging database runs PostgreSQL 15 on host db-2.",
         "Maria's weekly reports go out on Mondays in May, 3 days late.",
         "page selin about the outage; Selin owns deploys",
         "Builds are fast on the new runners since March 2024.",
         "Feature flags: enabled for 12 users, disabled for others.",
         "Мы не используем Redis в понедельник."]


def test_content_and_rest_words_computed_once_are_what_the_rule_says():
    for text in TEXTS:
        for f in (facets(text), with_known_names(facets(text), frozenset({"page", "selin"}))):
            content = frozenset(w[:-1] if len(w) > 3 and w.endswith("s") else w
                                for w in f.words if w not in STOPWORDS and not w[0].isdigit())
            rest = content - f.names - f.numbers - {w for w in f.words
                                                     if w in MONTHS or w in WEEKDAYS}
            assert content_words(f) == content and rest_words(f) == rest
            assert content_words(f) is content_words(f)  # computed once
    # A copy with other names has its own (the cached value is never carried over).
    f = facets("page selin about the outage")
    assert "selin" in rest_words(f)
    assert "selin" not in rest_words(replace(f, names=f.names | {"selin"}))
