"""Fingerprints of text, for erasure's own check of the timeline: hashes of each sentence
(of at least ``MIN_WORDS`` words) and of each run of ``NGRAM`` consecutive words, after
normalising (case folded, punctuation and spacing dropped).

A summary quotes sentences of its sources, not their whole text: comparing a summary part
with the SHA-256 of a whole erased memory misses a sentence lifted from a memory of
several. While an erasure runs, the erased memories' content is still there (its
``touched`` and ``erase`` steps run before the delete), so their fingerprints are taken
then and kept in this process for that erasure's check (:func:`remember`,
:func:`recalled`). They are never stored: a fingerprint of a short sentence is a
dictionary attack away from its words, and a certificate must hold no content. A later
``verify_certificate`` therefore checks ids and whole-text hashes only (docs/timeline.md,
"Erasure").
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
#: Shorter sentences ("Yes, done.") are too common to say anything about their source.
MIN_WORDS = 4
#: A run of this many words in common is a quotation, not a coincidence of phrasing.
NGRAM = 8
#: Erasures whose fingerprints this process keeps (the latest; an erasure's check runs
#: moments after its delete).
_KEPT = 32
_remembered: OrderedDict[tuple[Any, frozenset[str]], frozenset[str]] = OrderedDict()


def _digest(words: Sequence[str]) -> str:
    return hashlib.sha256(" ".join(words).encode()).hexdigest()[:32]


def of(text: str) -> set[str]:
    """The fingerprints of ``text``: its sentences' and its word ``NGRAM``-grams'."""
    found = set()
    for sentence in _SENTENCE.split(text):
        words = _WORD.findall(sentence.casefold())
        if len(words) >= MIN_WORDS:
            found.add("s" + _digest(words))
    words = _WORD.findall(text.casefold())
    found.update("g" + _digest(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1))
    return found


def of_all(texts: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for text in texts:
        found |= of(text)
    return found


def _key(namespace_pk: Any, ids: Iterable[Any]) -> tuple[Any, frozenset[str]]:
    return namespace_pk, frozenset(str(i) for i in ids)


def remember(namespace_pk: Any, ids: Iterable[Any], prints: set[str]) -> None:
    """Keep an erasure's fingerprints for its check (in this process only)."""
    key = _key(namespace_pk, ids)
    _remembered[key] = frozenset(prints)
    _remembered.move_to_end(key)
    while len(_remembered) > _KEPT:
        _remembered.popitem(last=False)


def known(namespace_pk: Any, ids: Iterable[Any]) -> bool:
    return _key(namespace_pk, ids) in _remembered


def recalled(namespace_pk: Any, ids: Iterable[Any]) -> frozenset[str]:
    """The fingerprints remembered for an erasure of exactly these ids (empty: none are,
    e.g. in ``verify_certificate`` or another process)."""
    return _remembered.get(_key(namespace_pk, ids), frozenset())
