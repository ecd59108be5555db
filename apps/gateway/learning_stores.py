"""The gateway's learning data in the registry of stores (apps/memories/stores.py), so
erasure, ``verify_certificate`` and ``stats`` reach it: ``gateway_facts`` (quarantined,
promoted and rejected facts) and ``gateway_exchanges`` (exchanges waiting for extraction,
redacted). Both are rows of their namespace: deleting it drops them (SQL cascade).

What an erasure of some memories removes here (in its transaction, before the delete,
while the memory rows can still be read):

- every fact promoted into one of them (``memory_id``), and every fact whose text is one
  of theirs (the same content hash);
- every fact and waiting exchange of an **agent** or a **session** none of whose
  memories in the namespace survives the erasure: an erasure by ``agent_id`` or
  ``session_id`` (a person) takes what that person's key taught and was not yet
  confirmed. (An erasure by memory ids that happens to take all of an agent's memories
  takes its facts too: more is erased, never less.)

An erasure by ``agent_id`` or ``session_id`` also reaches their rows directly (the
``subject_*`` operations, :func:`apps.memories.stores.subject_columns`): an agent known to
the gateway only (its facts still in quarantine, no memory yet) is erasable, and a ledger
replay after a restore finds its rows by the keyed hash of its id.

The check (``remaining``) looks for facts naming an erased id or holding an erased text,
and, within the erasing process, for anything left of the agents and sessions erased.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Q

from apps.memories import stores
from apps.memories.models import Memory, content_hash
from apps.tenancy.models import Namespace

from .models import LearnedFact, PendingExchange

#: (namespace id, erased ids) -> the agents and sessions that erasure took whole (for its
#: own check, in this process; an erasure runs erase and then its checks here).
_whole: dict[tuple[int, frozenset[str]], tuple[set[str], set[str]]] = {}
_REMEMBERED = 64


def _people(namespace: Namespace, ids: Sequence[Any]) -> tuple[set[str], set[str]]:
    """The agents and sessions of ``ids`` with no memory left in the namespace besides them."""
    wanted = [str(i) for i in ids]
    agents: set[str] = set()
    sessions: set[str] = set()
    for part in stores.chunks(wanted):
        for agent, session in Memory.objects.in_namespace_checked(namespace).filter(
                pk__in=part).values_list("agent_id", "session_id"):
            agents.add(agent)
            if session:
                sessions.add(session)
    others = Memory.objects.filter(namespace=namespace).exclude(pk__in=wanted).order_by()
    agents -= set(others.filter(agent_id__in=agents).values_list("agent_id", flat=True))
    sessions -= set(others.filter(session_id__in=sessions).values_list("session_id", flat=True))
    if len(_whole) >= _REMEMBERED:  # a long-running process: keep the latest erasures only
        _whole.pop(next(iter(_whole)))
    _whole[(namespace.pk, frozenset(wanted))] = (agents, sessions)
    return agents, sessions


def _hashes(namespace: Namespace, ids: Sequence[Any]) -> set[str]:
    found: set[str] = set()
    for part in stores.chunks([str(i) for i in ids]):
        found |= set(Memory.objects.in_namespace_checked(namespace).filter(pk__in=part)
                     .values_list("content_hash", flat=True))
    return found


def _facts_matching(namespace: Namespace, ids: Sequence[Any], hashes: set[str],
                    agents: set[str], sessions: set[str]) -> list[Any]:
    found: set[Any] = set()
    query = LearnedFact.objects.filter(namespace=namespace)
    for part in stores.chunks([str(i) for i in ids]):
        found |= set(query.filter(memory_id__in=part).values_list("pk", flat=True))
    if agents or sessions:
        found |= set(query.filter(Q(agent_id__in=agents) | Q(session_id__in=sessions))
                     .values_list("pk", flat=True))
    if hashes:
        # Through instances, not values_list: an encrypted namespace's text opens there.
        found |= {fact.pk for fact in query.only("pk", "namespace_id", "text")
                  .iterator(chunk_size=2000) if content_hash(fact.text, namespace) in hashes}
    return list(found)


def facts_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    if ids is None:
        return LearnedFact.objects.filter(namespace=namespace).count()
    return stores.count_in(LearnedFact.objects.filter(namespace=namespace), "memory_id",
                           [str(i) for i in ids])


def facts_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    agents, sessions = _people(namespace, ids)
    doomed = _facts_matching(namespace, ids, _hashes(namespace, ids), agents, sessions)
    for part in stores.chunks(doomed):
        LearnedFact.objects.filter(pk__in=part).delete()


def facts_remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    if namespace is None:
        return None  # its rows went with it
    hashes = set(erased.hashes) - set(Memory.objects.filter(
        namespace=namespace, content_hash__in=set(erased.hashes)).values_list(
        "content_hash", flat=True))  # text a live memory holds is that memory's to show
    agents, sessions = _whole.get((namespace.pk, frozenset(erased.ids)), (set(), set()))
    return len(_facts_matching(namespace, erased.ids, hashes, agents, sessions))


def exchanges_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int | None:
    return PendingExchange.objects.filter(namespace=namespace).count() if ids is None else 0


def _exchanges(namespace: Namespace, agents: set[str], sessions: set[str]):
    return PendingExchange.objects.filter(namespace=namespace).filter(
        Q(agent_id__in=agents) | Q(session_id__in=sessions))


def exchanges_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    agents, sessions = _whole.get((namespace.pk, frozenset(str(i) for i in ids))) \
        or _people(namespace, ids)
    if agents or sessions:
        _exchanges(namespace, agents, sessions).delete()


def exchanges_remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    if namespace is None:
        return None
    agents, sessions = _whole.get((namespace.pk, frozenset(erased.ids)), (set(), set()))
    return _exchanges(namespace, agents, sessions).count() if agents or sessions else 0


def subject_filter(selection: Any, memory_field: str | None = None) -> Q:
    """The rows of a gateway store about a subject (privacy's Selector): an agent's or a
    session's own rows when the subject is that agent or session, and rows tied to a
    selected memory (``memory_field``). Never widened from memories to whole agents: an
    agent key may serve several people, and a subject export must not carry the others'."""
    field, value = selection.subject
    found = Q(pk__in=[])
    if field in ("agent_id", "session_id"):
        found |= Q(**{field: value})
    if memory_field:
        found |= Q(**{f"{memory_field}__in": selection.memories().values("pk")})
    return found


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def facts_export(namespace: Namespace, selection: Any) -> Iterator[dict[str, Any]]:
    """The facts learned in the namespace (``selection`` None), or a subject's: those its
    agent or session taught, and those promoted into one of its memories."""
    query = LearnedFact.objects.filter(namespace=namespace)
    if selection is not None:
        query = query.filter(subject_filter(selection, "memory_id"))
    for fact in query.order_by("first_seen_at", "id").iterator(chunk_size=500):
        yield {"id": str(fact.pk), "state": fact.state, "text": fact.text,
               "agent_id": fact.agent_id, "session_id": fact.session_id,
               "confidence": fact.confidence, "seen_count": fact.seen_count,
               "first_seen_at": _iso(fact.first_seen_at), "last_seen_at": _iso(fact.last_seen_at),
               "memory_id": str(fact.memory_id) if fact.memory_id else None,
               "decided_by": fact.decided_by, "decided_at": _iso(fact.decided_at)}


def exchanges_export(namespace: Namespace, selection: Any) -> Iterator[dict[str, Any]]:
    """The exchanges still queued for learning (redacted text), of the namespace or of the
    subject's agent or session."""
    query = PendingExchange.objects.filter(namespace=namespace)
    if selection is not None:
        query = query.filter(subject_filter(selection))
    for row in query.order_by("created_at", "id").iterator(chunk_size=500):
        yield {"id": str(row.pk), "agent_id": row.agent_id, "session_id": row.session_id,
               "api": row.api, "user_text": row.user_text,
               "assistant_text": row.assistant_text, "facts": row.facts,
               "created_at": _iso(row.created_at), "failed": row.failed}


FACTS = stores.Store(
    "gateway_facts", "gateway facts (quarantined, promoted, rejected)",
    "gateway_learnedfact: candidate facts the memory gateway extracted from exchanges "
    "(redacted text, the agent and session that taught them, sightings) and, once promoted, "
    "the memory each became. Erasure removes the facts promoted into or repeating an erased "
    "memory, and every fact of an agent or session the erasure takes whole or names (an "
    "erasure by agent_id or session_id: even one that selects no memory).",
    stores.ErasedBy.ERASURE, models=(LearnedFact,), count=facts_count,
    remaining=facts_remaining, erase=facts_erase, export=facts_export,
    **stores.subject_columns(LearnedFact, "first_seen_at"))
EXCHANGES = stores.Store(
    "gateway_exchanges", "gateway exchanges waiting for learning",
    "gateway_pendingexchange: answered exchanges (the latest user turn and the answer, "
    "redacted) queued for extraction, then their extracted facts until applied. Erasure "
    "removes those of an agent or session it takes whole or names.",
    stores.ErasedBy.ERASURE, models=(PendingExchange,), count=exchanges_count,
    remaining=exchanges_remaining, erase=exchanges_erase, export=exchanges_export,
    **stores.subject_columns(PendingExchange, "created_at"))

#: What a namespace merge does with them (apps/memories/write_moves.py's MOVE_HANDLING).
MOVE_HANDLING = {
    "gateway_facts": "kept with the source namespace (unconfirmed candidates are not moved; "
                     "they go when the source is deleted)",
    "gateway_exchanges": "kept with the source namespace (learned there, or dropped with it)",
}


def register_stores() -> None:
    """Called by ``GatewayConfig.ready``: the gateway sits above memories."""
    from apps.memories import write_moves

    stores.register(FACTS)
    stores.register(EXCHANGES)
    for name, handling in MOVE_HANDLING.items():
        write_moves.MOVE_HANDLING.setdefault(name, handling)
