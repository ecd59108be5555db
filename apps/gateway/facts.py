"""When two extracted facts are the same fact: the canonical text and its key.

A fact is made canonical by NFKC (full-width and compatibility forms folded), case
folding, dropping the wrappers a speaker puts around a fact ("remember that", "note:",
"fyi"), dropping punctuation, dropping filler words that do not change what it says
(:data:`FILLERS`: "always", "currently", "the"…) and collapsing whitespace. So
"Remember that our DB is Postgres 16!" and "our db is postgres 16" are one fact, and so
are "We deploy on Fridays" and "We always deploy on Fridays" (near-identical); "We use
pnpm" and "We use npm" are two. The :func:`key` (SHA-256 of the canonical text; in an
encrypted namespace an HMAC under the namespace's ``fact-key`` key, so the column gives no
short fact away to a dictionary) finds a fact's row in one lookup. Deliberately word-exact
beyond that: a similarity ratio over characters calls "pnpm" and "npm" the same, and a
wrong merge would promote a fact nobody stated twice.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from apps.memories.sealing import keyed_hash

#: Words whose presence does not change a fact.
FILLERS = frozenset({
    "a", "an", "the", "that", "always", "usually", "generally", "currently", "now", "really",
    "also", "still", "just", "actually", "definitely", "indeed", "all", "so", "please",
})
_WRAPPER = re.compile(r"^(?:please\s+)?(?:remember|note|keep in mind|don't forget|do not forget|"
                      r"for the record|fyi|for your information)(?:\s+that)?\b\s*", re.IGNORECASE)
_PUNCTUATION = re.compile(r"[^\w\s]+")


def normalise(text: str) -> str:
    """The canonical text (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text or "").casefold().strip()
    folded = _WRAPPER.sub("", folded)
    words = _PUNCTUATION.sub(" ", folded).split()
    return " ".join(word for word in words if word not in FILLERS)


def key(text: str, namespace: Any = None) -> str:
    """The fact's row key in ``namespace`` (a Namespace or its id): see the module doc.
    Pass the namespace wherever the key is stored or compared."""
    return keyed_hash(normalise(text), namespace, "fact-key")


def near_identical(one: str, other: str) -> bool:
    """Whether two facts say the same (the same canonical text)."""
    return normalise(one) == normalise(other)
