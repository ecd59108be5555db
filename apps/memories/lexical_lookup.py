"""A person's precise lookup (the dashboard's search), on the keyword index of lexical.py.

Recall's keyword stage (``lexical.build_query``/``search``) is an OR of words tuned for recall
quality and stays so. A person looking something up needs the opposite: every word by
default, and "quoted phrases" and punctuated tokens (e-mail addresses, URLs, ids)
matched as written, not as a bag of their parts: jane@example.com as the OR of jane,
example and com found 534 memories. The engines only narrow the candidates (FTS5 splits
jane@example.com into a phrase of three words, PostgreSQL keeps it one token); each
exact item is then checked on the text itself, so mary.jane@example.com or
jane@example.com.au never count as jane@example.com.

In an encrypted namespace the engine matches blind tokens (lexical.search blinds the
words and each exact item's parts with the namespace's key), and the exact check reads
the memories' text through the ORM, which opens it: nothing here reads words back from
the index, which has none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from apps.memories import blind_tokens, sealing
from apps.memories.lexical import _CHUNK, _WORD, MAX_TERMS, STOPWORDS, LexicalQuery, _stem, search

_QUOTES = "\"“”„"
_QUOTED = re.compile(rf"[{_QUOTES}]([^{_QUOTES}]*)(?:[{_QUOTES}]|$)")
#: Runs of letters and digits: the words FTS5's unicode61 tokenizer makes of a phrase.
_PARTS = re.compile(r"[^\W_]+")
_EDGES = re.compile(r"^\W+|\W+$")
#: Inner punctuation that makes a chunk one exact token (apostrophes do not: Jane's).
_PUNCTUATED = re.compile("[^\\w\\s'\u2019]")
_APOSTROPHE = re.compile("['\u2019]")
#: Characters that join the parts of one longer token (mary.jane@example.com, follow-up,
#: v1.2.3): an exact item next to one of them followed by a letter is part of another token.
_JOINERS = r".@+\-"
#: Highlighting stems content words only when they start like a query word's stem.
_STEM_PREFIX = 3


@dataclass(frozen=True)
class Lookup:
    """A person's search, parsed: plain words (the engine stems them) and exact items
    (quoted phrases, punctuated tokens; lower case, single-spaced)."""

    words: tuple[str, ...]
    exact: tuple[str, ...]
    #: True: every word and item must match; False: any of them.
    match_all: bool
    #: What the engine runs (search() above): it narrows, the exact check decides.
    query: LexicalQuery

    @property
    def terms(self) -> tuple[str, ...]:
        return self.query.terms

    def patterns(self) -> list[re.Pattern[str]]:
        return [_exact_pattern(item) for item in self.exact]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the text matches, sorted and merged (to highlight it): exact items as
        written, words by their Porter stem as the keyword index matches them."""
        found = [m.span() for pattern in self.patterns() for m in pattern.finditer(text)]
        if self.words:
            stems = {_stem(w) for w in self.words} | set(self.words)
            prefixes = sorted({s[:_STEM_PREFIX] for s in stems}, key=len, reverse=True)
            near = re.compile(r"\b(?:" + "|".join(map(re.escape, prefixes)) + r")\w*", re.IGNORECASE)
            found += [m.span() for m in near.finditer(text)
                      if m.group().lower() in stems or _stem(m.group().lower()) in stems]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged


def parse_lookup(text: str, match_all: bool = True) -> Lookup:
    """Split a person's search into words and exact items, and build the engine query.

    ``"a quoted phrase"`` (straight or curly quotes; an unclosed quote runs to the end)
    and any chunk with inner punctuation other than an apostrophe (jane@example.com,
    https://example.com/a, T-1234, v1.2.3) are exact items; the rest are words, minus
    stopwords unless nothing else is left, as build_query does.
    """
    exact: list[str] = []
    rest: list[str] = []
    position = 0
    for quoted in _QUOTED.finditer(text):
        rest.append(text[position:quoted.start()])
        position = quoted.end()
        phrase = " ".join(part for chunk in quoted.group(1).split() if (part := _EDGES.sub("", chunk)))
        if _PARTS.search(phrase):
            exact.append(phrase.lower())
    rest.append(text[position:])
    words: list[str] = []
    for chunk in " ".join(rest).split():
        chunk = _EDGES.sub("", chunk)
        if _PUNCTUATED.search(chunk) and _PARTS.search(chunk):
            exact.append(chunk.lower())
        else:
            words.extend(w.lower() for w in _WORD.findall(chunk))
    exact = list(dict.fromkeys(exact))[:MAX_TERMS]
    kept = [w for w in dict.fromkeys(words) if w not in STOPWORDS]
    if not kept and not exact:  # stopwords only: still search for what was asked
        kept = list(dict.fromkeys(words))
    kept = kept[:max(0, MAX_TERMS - len(exact))]
    return Lookup(tuple(kept), tuple(exact), match_all, _lookup_query(kept, exact, match_all))


def _lookup_query(words: list[str], exact: list[str], match_all: bool) -> LexicalQuery:
    if connection.vendor == "postgresql":
        # A quoted operand goes through the same parser as the memories' text, so an
        # e-mail address or URL becomes the very token(s) the tsvector holds.
        quoted = ["'" + item.replace("\\", "\\\\").replace("'", "''") + "'" for item in exact]
        engine_query = (" & " if match_all else " | ").join([*words, *quoted])
    else:
        phrases = ['"' + " ".join(_PARTS.findall(item)) + '"' for item in exact]
        engine_query = (" AND " if match_all else " OR ").join([*(f'"{w}"' for w in words), *phrases])
    return LexicalQuery((*words, *exact), engine_query, operator="AND" if match_all else "OR")


def _exact_pattern(item: str) -> re.Pattern[str]:
    """The item as written (any case; any spacing or punctuation between its chunks, any
    apostrophe for an apostrophe), not inside a longer word or token."""
    chunks = [_APOSTROPHE.sub("['\u2019]", re.escape(chunk)) for chunk in item.split(" ")]
    body = r"\W+".join(chunks)
    return re.compile(rf"(?<!\w)(?<!\w[{_JOINERS}]){body}(?!\w)(?![{_JOINERS}]\w)", re.IGNORECASE)


def lookup(namespace_id: int, query: Lookup, limit: int,
           candidates: QuerySet | None = None) -> list[tuple[uuid.UUID, float]]:
    """A lookup's best ``limit`` matches in a namespace, best first (scores as search()).

    The engine's matches are checked against every exact item on the stored text; when
    the check turns some away, more are fetched (4 times as many each round) until
    ``limit`` pass or the engine has no more, so a count of ``limit`` means "at least".
    """
    if not query.terms:
        return []
    if not query.exact:
        return search(namespace_id, query.query, limit, candidates, context_weight=0.0)
    verdicts: dict[uuid.UUID, bool] = {}
    fetch = limit
    while True:
        rows = search(namespace_id, query.query, fetch, candidates, context_weight=0.0)
        verdicts.update(_exact_verdicts(namespace_id, query, [pk for pk, _ in rows if pk not in verdicts]))
        kept = [(pk, score) for pk, score in rows if verdicts[pk]]
        if len(kept) >= limit or len(rows) < fetch:
            return kept[:limit]
        fetch *= 4


def _texts(namespace_id: int, memories: QuerySet) -> Iterable[tuple[uuid.UUID, str]]:
    """``(pk, content)``: as stored, or opened through the ORM in an encrypted namespace
    (its column holds ciphertext; ``sealing.texts`` opens it)."""
    if blind_tokens.encrypted(namespace_id):
        return sealing.texts(memories)
    return memories.values_list("pk", "content")


def _exact_verdicts(namespace_id: int, query: Lookup, ids: list[uuid.UUID]) -> dict[uuid.UUID, bool]:
    """Per memory: does it satisfy the lookup, exact items checked on its text? With
    "any", a memory that has none of the exact items passes if a plain word matched
    (asked of the engine: its stemming decides, as for the words everywhere else)."""
    from apps.memories.models import Memory  # lexical is imported by the models' services

    patterns = query.patterns()
    check = all if query.match_all else any
    verdicts: dict[uuid.UUID, bool] = {}
    for start in range(0, len(ids), _CHUNK):
        part = ids[start:start + _CHUNK]
        for pk, content in _texts(namespace_id, Memory.objects.filter(pk__in=part)):
            verdicts[pk] = check(pattern.search(content) for pattern in patterns)
    missing = {pk: False for pk in ids if pk not in verdicts}  # deleted meanwhile
    failed = [pk for pk, ok in verdicts.items() if not ok]
    if failed and query.words and not query.match_all:
        words = _lookup_query(list(query.words), [], False)
        for start in range(0, len(failed), _CHUNK):
            part = failed[start:start + _CHUNK]
            for pk, _ in search(namespace_id, words, len(part), Memory.objects.filter(pk__in=part),
                                context_weight=0.0):
                verdicts[pk] = True
    return {**verdicts, **missing}
