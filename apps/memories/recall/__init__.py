"""Recall: the memories that best answer a query, ranked, each with how it scored.

One module per stage: ``channels`` asks the vector index and the keyword index for
candidates (in the caller's namespace and those sharing with it), ``fusion`` merges
their rankings, ``context`` adds hybrid's session input and loads the rows from SQL,
``ranking`` finishes (priors, the optional reranker of ``rerank``, minimum score, MMR)
and ``service`` runs them in order and records the recall. ``as_of`` (with
``as_of_keywords``) makes a recall answer as of a past moment (issue 20). ``results`` holds what a
recall returns. A package of its own, not a module of :mod:`apps.memories.services`,
because it is the largest use case, with stages that are tested one by one;
``services`` re-exports ``recall`` for the doors.
"""

from apps.memories.recall.results import RecallHit, RecallResult
from apps.memories.recall.service import recall

__all__ = ["RecallHit", "RecallResult", "recall"]
