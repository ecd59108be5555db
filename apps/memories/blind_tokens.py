"""Blind keyword tokens: the keyword index of an encrypted namespace holds no words.

Issue 23 item 2 (docs/encryption.md): an encrypted namespace's memories are ciphertext in
SQL (apps/memories/sealing.py), but lexical and hybrid recall still need a keyword index.
Each term the index would hold (FTS5's ``porter unicode61 remove_diacritics 2``, which
``keyword_index.tokens`` reproduces: lower case, diacritics removed, runs of letters and
digits, Porter stem for 3..64 bytes) is replaced by a *blind token*: HMAC-SHA256 of the
term under the namespace's ``blind-tokens`` key (``namespace_keys.subkey``, derived from
its data key, so it dies with it when the namespace is shredded), written as
:data:`DIGITS` decimal digits.

Why this keeps ranking as it was: the mapping is one-to-one per namespace (up to HMAC
collisions, ~2**-79 per pair of terms), and a memory's token text keeps its terms' order
and count, so BM25's statistics (document frequencies, row lengths, the average) and
FTS5's phrases (positions) are those of the plaintext. Why digits: FTS5's unicode61
tokenizer keeps a run of digits as one token and its porter stemmer only strips letter
suffixes, so the table stores exactly the token written (tests/memories/
test_blind_tokens.py checks it in the table's fts5vocab), and PostgreSQL's parser keeps
it one lexeme under the ``simple`` configuration.

What it does not hide: how often a (blinded) term occurs and in which memories, i.e. the
equality pattern of terms — what any searchable index of ciphertext reveals. Without the
key a token cannot be tied to a word by a dictionary, and another namespace's token for
the same word differs.

The queries are blinded with the same key in ``lexical.search``, per namespace searched
(a grantor's key for a shared namespace), never in ``build_query``: the query text as
typed stays the caller's. A missing, shredded or wrong key raises
:class:`~apps.core.key_providers.KeyUnavailable` from :func:`for_namespace` (503 at the
API); nothing here ever falls back to words.

Key versions: the token key is derived from the namespace's first data key version
(``namespace_keys.PURPOSE_VERSION``, kept until the namespace is shredded), so a rotation
of the data key (``rotate_keys --namespace``) leaves the index as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from apps.core import namespace_keys
from apps.memories import sealing
from apps.memories.keyword_index import tokens

PURPOSE = "blind-tokens"
#: Decimal digits per token: 10**24 > 2**79, so two terms of a namespace share a token
#: with negligible probability (and a collision only merges two terms' statistics).
DIGITS = 24
_MODULUS = 10**DIGITS
#: Ids per ORM read.
_CHUNK = 500
#: Texts :func:`blinded_rows` remembers within one call (a memory's context is usually
#: the batch's previous memory; a rebuild must not hold the whole namespace's text).
_MEMO_TEXTS = 1024


def encrypted(namespace_id: int) -> bool:
    """Whether the namespace's keyword index holds blind tokens (cheap: sealing.py caches
    the flag, for good once it is on)."""
    return sealing.namespace_encrypted(int(namespace_id))


class Blinder:
    """One namespace's token function (made per operation, so a shredded key stops the
    next one; holds no per-word cache: no word-to-token table is kept in memory beyond
    one operation — :func:`blinded_rows` memoises one call's terms in a dict of its own)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        #: The HMAC with the key absorbed: each token copies it (a third faster than
        #: keying a new one per term).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, term: str) -> str:
        """The blind token of one index term (already normalised and stemmed)."""
        mac = self._keyed.copy()
        mac.update(term.encode())
        return f"{int.from_bytes(mac.digest()[:16], 'big') % _MODULUS:0{DIGITS}d}"

    def terms(self, text: str) -> list[str]:
        """The tokens of ``text``, in order: what the index holds for it."""
        return [self.token(term) for term in tokens(text)]

    def text(self, text: str) -> str:
        """``text`` as the index stores it: its tokens separated by spaces."""
        return " ".join(self.terms(text))

    def phrase(self, query_term: str) -> str:
        """A query term (a word of ``build_query``, or an exact item's parts) as a phrase
        of tokens, to quote for FTS5 (``"t1 t2"``; "" for a term of no token, which
        matches nothing, as the quoted word did)."""
        return self.text(query_term)


def for_namespace(namespace_id: int) -> Blinder:
    """The namespace's token function; :class:`KeyUnavailable` without its key."""
    return Blinder(namespace_keys.subkey(int(namespace_id), PURPOSE))


def context_cut(text: str | None) -> str:
    """The part of a conversation context the index holds (``lexical.CONTEXT_CHARS``
    characters, as ``substr`` cuts it in SQL), '' for none."""
    from apps.memories.lexical import CONTEXT_CHARS

    return text[:CONTEXT_CHARS] if text else ""


def plaintexts(namespace_id: int, memory_ids: Sequence[uuid.UUID | str] | None,
               ) -> Iterator[tuple[str, str, str | None, str | None]]:
    """``(id hex, content, context content or None, context id hex or None)`` of these
    memories of the namespace (every one for None), read through the ORM so sealed text
    is opened (``values_list`` would give ciphertext markers)."""
    from apps.memories.models import Memory

    rows = (Memory.objects.select_related("context_memory")
            .only("id", "namespace_id", "content", "context_memory_id", "context_memory__id",
                  "context_memory__namespace_id", "context_memory__content"))

    def read(queryset) -> Iterator[tuple[str, str, str | None, str | None]]:
        for memory in queryset:
            context = memory.context_memory
            yield (memory.pk.hex, memory.content, None if context is None else context.content,
                   None if context is None else context.pk.hex)

    if memory_ids is None:
        yield from read(rows.filter(namespace_id=namespace_id).order_by().iterator(chunk_size=2000))
        return
    ids = [uuid.UUID(str(i)) for i in memory_ids]
    for start in range(0, len(ids), _CHUNK):
        yield from read(rows.in_namespace_checked(namespace_id).filter(pk__in=ids[start:start + _CHUNK]))


def written_plaintexts(memories: Sequence[Any]) -> Iterator[tuple[str, str, str | None, str | None]]:
    """:func:`plaintexts` of memories just written (saved ``Memory`` instances, in the
    write's transaction): their text is on the instances already (a sealed field seals
    what it stores and leaves the instance's value as it was), and so are the contexts
    ``context.assign`` linked; any other context is read in one query."""
    from apps.memories.models import Memory

    linked = Memory._meta.get_field("context_memory")
    wanted = {m.context_memory_id for m in memories
              if m.context_memory_id is not None and not linked.is_cached(m)}
    contents = dict(sealing.texts(Memory.objects.filter(pk__in=wanted))) if wanted else {}
    for memory in memories:
        context = None
        if memory.context_memory_id is not None:
            loaded = memory.context_memory if linked.is_cached(memory) else None
            context = loaded.content if loaded is not None else contents.get(memory.context_memory_id)
        yield (memory.pk.hex, memory.content, context,
               None if memory.context_memory_id is None else memory.context_memory_id.hex)


def blinded_rows(namespace_id: int, memory_ids: Sequence[uuid.UUID | str] | None,
                 written: Sequence[Any] | None = None) -> Iterator[tuple[str, str, str, str | None]]:
    """``(id hex, content tokens, context tokens, context id hex)`` for the index of an
    encrypted namespace (``written``: the instances of ``memory_ids`` just saved, read
    from themselves); the key is taken once, before the first row.

    A batch repeats its words, and a memory's context is usually the batch's previous
    memory: each term is blinded once per call and each text tokenised once, memoised in
    this call's own dicts (texts: at most :data:`_MEMO_TEXTS`), which go with it (the
    module keeps no word-to-token table beyond one operation). Measured in-process
    (cProfile, 6 batches of 500 bench/corpus.py memories): 2.6 s of blinding and reading
    back before, 0.4 s after."""
    blinder = for_namespace(namespace_id)
    made: dict[str, str] = {}
    done: dict[str, str] = {}

    def text(value: str) -> str:
        found = done.get(value)
        if found is not None:
            return found
        out = []
        for term in tokens(value):
            token = made.get(term)
            if token is None:
                token = made[term] = blinder.token(term)
            out.append(token)
        if len(done) >= _MEMO_TEXTS:  # bounded: a rebuild reads the whole namespace
            done.clear()
        found = done[value] = " ".join(out)
        return found

    rows = written_plaintexts(written) if written is not None else plaintexts(namespace_id, memory_ids)
    for memory_id, content, context, context_id in rows:
        yield memory_id, text(content), text(context_cut(context)), context_id


def index_terms(blinder: Blinder, terms: Iterable[str]) -> list[list[str]]:
    """Each query term as the token phrase it is in the index (for the in-memory engine
    and the fts5vocab look-ups)."""
    return [blinder.terms(term) for term in terms]
