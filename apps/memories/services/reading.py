"""Reading memories: one (``get``, the caller's own or shared with it, now or as it was at
a past moment), its history (``versions``), a list (``list_memories``) and the
dashboard's keyword lookup (``keyword_matches``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Q, QuerySet

from apps.core.errors import NotFound
from apps.core.roles import Action
from apps.memories import history, lexical_lookup, schemas
from apps.memories.models import Memory
from apps.memories.results import SharedMemory
from apps.memories.services.access import _shared, _visible
from apps.tenancy.grants import live_grants_to
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace


def get(principal: Principal, memory_id: Any, as_of: Any = None) -> Memory | SharedMemory:
    """One live memory the principal may read: in its namespaces (the ``Memory``), or
    shared with one of them by a live grant (a ``SharedMemory``, shown without the
    grantor's statistics); NotFound otherwise (never says which).

    ``as_of`` (a date-time; a later one than now means now): the memory as it was then
    (``apps.memories.history``): NotFound if it was stored after, as for a missing one;
    an edited one at the version in force then, as an unsaved snapshot. A memory read
    through a grant must be in the grant's scope both now and as it was then. Deleted,
    erased and expired memories are gone whatever the moment.
    """
    moment = None
    if as_of is not None:
        moment = history.moment(schemas.validate(schemas.AsOfInput, {"as_of": as_of})["as_of"])
    try:
        memory = _visible(principal, memory_id, Memory.objects.live())
    except NotFound:
        memory = _shared(principal, memory_id, Memory.objects.live())
        if memory is None:
            raise
        if moment is None:
            return SharedMemory(memory)
        then = history.at(memory, moment)
        if then is None or not _shared_then(principal, then):
            raise
        return SharedMemory(then)
    if moment is None:
        return memory
    then = history.at(memory, moment)
    if then is None:
        raise NotFound("memory not found.")
    return then


def _shared_then(principal: Principal, then: Memory) -> bool:
    """A live grant to one of the principal's namespaces covers ``then`` (a memory's
    state at a past moment): a grant's scope (tags, kinds) is checked on what is shown."""
    grantees = principal.namespace_ids(Action.READ)
    return any(grant.covers(then)
               for grant in live_grants_to(list(grantees)).get(then.namespace_id, []))


def lineage(memory: Memory) -> dict[str, Any]:
    """A memory's consolidation lineage (docs/lifecycle.md), for its own namespace's
    readers: the memories merged into it (``derived_from``) and those it conflicts with
    (``conflicts_with``: the other's id and what differs). Two queries."""
    from apps.memories.models import MemoryLink

    derived, conflicts = [], []
    for source, target, relation, differs_in in (
            MemoryLink.objects.filter(Q(source=memory.pk) | Q(target=memory.pk),
                                      namespace_id=memory.namespace_id,
                                      relation__in=[MemoryLink.Relation.DERIVED_FROM,
                                                    MemoryLink.Relation.CONFLICTS_WITH])
            .order_by("created_at", "pk")
            .values_list("source_id", "target_id", "relation", "differs_in")[:LINEAGE_MAX]):
        if relation == MemoryLink.Relation.DERIVED_FROM and source == memory.pk:
            derived.append(str(target))
        elif relation == MemoryLink.Relation.CONFLICTS_WITH:
            other = target if source == memory.pk else source
            conflicts.append({"id": str(other), "differs_in": list(differs_in or [])})
    return {"derived_from": derived, "conflicts_with": conflicts}


def strength_of(memory: Memory) -> dict[str, Any]:
    """A memory's strength with its parts (apps/memories/strength.py), for its own
    namespace's readers (it includes the source agent's track record). Three queries."""
    from apps.memories import strength

    return strength.for_memories(memory.namespace, [memory])[str(memory.pk)].as_dict()


#: Lineage links shown per memory at most (a survivor holds up to 20 per merge).
LINEAGE_MAX = 500


def versions(principal: Principal, memory_id: Any):
    """A memory's edit history, newest first. Only for its own namespace's principals:
    past versions may hold content a sharing grant's scope no longer (or never) covered."""
    return _visible(principal, memory_id, Memory.objects.live()).versions.all()


def list_memories(principal: Principal, namespace: str | None = None, *,
                  include_superseded: bool = False):
    """Memories the principal may read, newest first; one namespace or all it can see.
    Memories a consolidation superseded are left out unless ``include_superseded``."""
    queryset = Memory.objects.for_principal(principal).live().select_related("namespace")
    if not include_superseded:
        queryset = queryset.current()
    if namespace:
        ns = resolve_namespace(principal, namespace)
        authorize(principal, ns.pk, Action.READ)
        queryset = queryset.filter(namespace=ns)
    return queryset.order_by("-created_at", "-pk")


def keyword_matches(principal: Principal, text: str, limit: int = 1000, *,
                    namespace_ids: Sequence[int] | None = None, match: str = "any",
                    candidates: QuerySet[Memory] | None = None) -> list[uuid.UUID]:
    """Memories matching ``text`` in the keyword index of every namespace the principal
    may read (its own, never shared ones), or of those of ``namespace_ids`` it may read;
    ``candidates`` (a Memory queryset: the list's filters) narrows the match itself.

    For people searching a list (the dashboard), not for recall (whose keyword stage is
    an OR of words tuned for recall: lexical.build_query). ``match`` "all": every word;
    "any": any of them; either way "quoted phrases" and punctuated tokens (e-mail
    addresses, URLs, ids) match exactly as written (lexical_lookup.parse_lookup). BM25 scores
    are per namespace and do not compare, so the result is grouped by namespace (in slug
    order), each namespace's best first; at most ``limit``.
    """
    query = lexical_lookup.parse_lookup(text, match_all=match == "all")
    if not query.terms:
        return []
    readable = Namespace.objects.order_by("slug")
    if not principal.is_system_admin:
        readable = readable.filter(pk__in=principal.namespace_ids(Action.READ))
    if namespace_ids is not None:
        readable = readable.filter(pk__in=list(namespace_ids))
    found: list[uuid.UUID] = []
    for ns_id in readable.values_list("pk", flat=True):
        found.extend(pk for pk, _ in lexical_lookup.lookup(ns_id, query, limit - len(found), candidates))
        if len(found) >= limit:
            break
    return found
