"""A learned fact's ``key`` when ``manage.py encrypt_namespace`` encrypts its namespace
(docs/encryption.md, "Turning encryption on").

The key is ``facts.key``: a plain SHA-256 of the canonical text while the namespace is
plain, an HMAC under the namespace's ``fact-key`` key once it is encrypted. A fact seen
before the switch keeps its plain key until the sweep recomputes it from the (opened)
text, here; without that its next sighting would not find it and start a second row.

A sighting between the switch and the sweep already made that second row (under the
keyed key): :func:`merge` folds it into the older one — sightings added, the earliest
first and the latest last sighting, a decision either made kept — and deletes it, so the
namespace keeps one row per fact. A row being promoted at that moment is left alone
(the sweep's next pass or run merges it), and so are two rows decided differently (one
rejected, one promoted: a person decides; the verification reports the row).
"""

from __future__ import annotations

from typing import Any

from apps.gateway import facts
from apps.gateway.models import FactState, LearnedFact
from apps.memories import encrypt_existing
from apps.tenancy.models import Namespace

#: Decided states: a merge keeps the decision of whichever row has one.
_DECIDED = (FactState.PROMOTED, FactState.REJECTED)


def compute(fact: LearnedFact, namespace: Namespace) -> str:
    """The key the learner would store for this fact's text now."""
    return facts.key(fact.text, namespace)


def merge(fact: LearnedFact, holder: LearnedFact) -> bool:
    """Fold ``holder`` (the same fact, recorded since the switch) into ``fact`` and delete
    it; False while either is being promoted."""
    if FactState.PROMOTING in (fact.state, holder.state):
        return False
    if (fact.state in _DECIDED and holder.state in _DECIDED
            and (fact.state, fact.memory_id) != (holder.state, holder.memory_id)):
        # Two decisions that disagree (rejected before the switch, promoted since): folding
        # would drop one, and with it a live memory's record. Left for a person: the row
        # stays unkeyed, which the verification counts (the command fails saying so).
        return False
    changes: dict[str, Any] = {
        "seen_count": fact.seen_count + holder.seen_count,
        "first_seen_at": min(fact.first_seen_at, holder.first_seen_at),
        "last_seen_at": max(fact.last_seen_at, holder.last_seen_at),
        "confidence": max(fact.confidence, holder.confidence),
    }
    if fact.state not in _DECIDED and holder.state in _DECIDED:
        changes.update(state=holder.state, memory_id=holder.memory_id,
                       decided_by=holder.decided_by, decided_at=holder.decided_at)
    holder.delete()
    LearnedFact.objects.filter(pk=fact.pk).update(**changes)
    for name, value in changes.items():
        setattr(fact, name, value)
    return True


def register() -> None:
    """From GatewayConfig.ready: ``encrypt_namespace`` recomputes the column."""
    encrypt_existing.register_keyed_hash(encrypt_existing.KeyedHash(
        LearnedFact, "key", compute, merge))
