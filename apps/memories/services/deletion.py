"""Deleting memories: by id (``delete``, ``delete_many``), by agent, by filter, and a
whole namespace. ``delete_memories`` is the one transaction the memory deletions end
in, written by the write path (apps/memories/writes.py), where erasure (apps.privacy)
deletes too (``writes.erase``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput, NotFound, PermissionDenied
from apps.core.roles import Action
from apps.core.scoping import namespace_check
from apps.memories import schemas, stores, writes
from apps.memories.models import Memory
from apps.memories.recall.channels import _filtered, filter_start
from apps.memories.services.access import _editable, check_append_only, check_writable
from apps.ops import metrics
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace


@metrics.observed("delete")
def delete(principal: Principal, memory_id: Any) -> None:
    """Delete one memory (team admin) from SQL, its versions, and the vector index."""
    memory = _editable(principal, memory_id)
    delete_memories(principal, {memory.namespace_id: [memory.pk]}, "memory.delete")


@metrics.observed("delete")
def delete_many(principal: Principal, memory_ids: Sequence[Any]) -> int:
    """Delete several memories in one transaction: all of them, or none if any is missing
    or in a namespace where the principal may not edit."""
    try:
        pks = {uuid.UUID(str(i)) for i in memory_ids}
    except ValueError:
        raise NotFound("memory not found.") from None
    by_namespace: dict[int, list[uuid.UUID]] = {}
    with_events: set[int] = set()
    readable = namespace_check(principal)  # by primary key (scoping.namespace_check)
    for ns_id, pk, event_type in Memory.objects.filter(pk__in=pks).values_list(
            "namespace_id", "pk", "event_type"):
        if not readable(ns_id):
            continue
        by_namespace.setdefault(ns_id, []).append(pk)
        if event_type:
            with_events.add(ns_id)
    if sum(map(len, by_namespace.values())) != len(pks):
        raise NotFound("memory not found.")
    for ns_id, namespace in Namespace.objects.in_bulk(list(by_namespace)).items():
        check_append_only(principal, ns_id, ns_id in with_events)
        authorize(principal, ns_id, Action.EDIT)
        check_writable(namespace)  # as delete(): an archived namespace is read-only
    return delete_memories(principal, by_namespace, "memory.delete")


@metrics.observed("delete_by_agent")
def delete_by_agent(principal: Principal, agent_id: str, namespace: str | None = None, *,
                    all_namespaces: bool = False, limit: int | None = None) -> dict[str, int]:
    """Delete every memory stored by ``agent_id`` (system admin) in ``namespace``, or in
    every namespace when ``all_namespaces`` says so explicitly; the count per namespace.
    The agent's conversation events go too: only a system admin gets here, and admins
    may erase events (append-only binds agents, who cannot reach this).
    ``limit``: at most this many this call (the dashboard's bulk job forgets in batches).

    An agent id is only unique within a tenant (two tenants may both have ``agent-1``), so
    deleting everywhere is never the default: a forgotten ``?namespace=`` must not wipe
    every tenant's agent of that name.
    """
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete all memories of an agent.")
    longest = settings.MEMORYWEB_LIMITS["max_id_length"]
    if not agent_id or len(agent_id) > longest or "\x00" in agent_id:
        raise InvalidInput(f"agent_id must be 1-{longest} characters.", field="agent_id")
    if bool(namespace) == all_namespaces:
        raise InvalidInput(
            "name one namespace (?namespace=) or every namespace (all_namespaces=true), not both."
            if namespace else "name the namespace to delete from (?namespace=), or confirm "
            "every namespace with all_namespaces=true: an agent id is only unique within a "
            "tenant.", field="all_namespaces")
    queryset = Memory.objects.filter(agent_id=agent_id)
    counts: dict[int, int] = {}
    if namespace:
        ns = resolve_namespace(principal, namespace)
        queryset, counts[ns.pk] = queryset.filter(namespace=ns), 0
    by_namespace: dict[int, list] = {}
    for ns_id, pk in queryset.values_list("namespace_id", "pk")[:limit]:
        by_namespace.setdefault(ns_id, []).append(pk)
    delete_memories(principal, by_namespace, "memory.delete_by_agent", {"agent_id": agent_id},
                     counts=counts)
    slugs = dict(Namespace.objects.filter(pk__in=list(counts)).values_list("pk", "slug"))
    return {slugs[ns_id]: counts[ns_id] for ns_id in sorted(counts, key=slugs.get)}


#: The recall filters that select memories to delete (as ``_filtered`` applies them).
_DELETE_FILTERS = {"agent_id", "session_id", "kind", "tags", "tags_any", "created_after",
                   "created_before", "occurred_after", "occurred_before", "metadata"}


@metrics.observed("delete_matching")
def delete_matching(principal: Principal, namespace: str | None, filters: Mapping[str, Any]) -> int:
    """Delete every memory of a namespace that matches ``filters`` (system admin, like
    delete_by_agent): the recall filters' meaning, at least one of them, and at most
    ``max_filter_delete`` memories (more is refused: narrow it or delete by ids). Events
    that match go too (``kind: event`` selects only them), as in delete_by_agent."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete memories by filter.")
    cleaned = schemas.validate(schemas.RecallFilters, dict(filters), prefix="filters")
    cleaned.pop("include_invalid", None)
    cleaned.pop("include_superseded", None)  # superseded memories match like any other
    other = sorted(set(cleaned) - _DELETE_FILTERS)
    if other:  # a recall-only filter (valid_at) would select nothing here, or everything
        raise InvalidInput(f"{other[0]} cannot select memories to delete.", field=f"filters.{other[0]}")
    if not any(cleaned.values()):
        raise InvalidInput("give at least one filter (or ids); deleting a whole namespace "
                           "is DELETE /api/v1/namespaces/{slug}.", field="filters")
    ns = resolve_namespace(principal, namespace)
    check_writable(ns)
    pks = list(_filtered(filter_start(ns, cleaned), cleaned, ns).order_by().values_list("pk", flat=True)
               [: settings.MEMORYWEB_LIMITS["max_filter_delete"] + 1])
    if len(pks) > settings.MEMORYWEB_LIMITS["max_filter_delete"]:
        raise InvalidInput(f"the filter matches more than "
                           f"{settings.MEMORYWEB_LIMITS['max_filter_delete']} memories; narrow it "
                           "or delete by ids.", field="filters", code="too_many")
    if not pks:
        return 0
    described = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in cleaned.items()}
    return delete_memories(principal, {ns.pk: pks}, "memory.delete_matching",
                            {"filters": described})


def delete_memories(principal: Principal, by_namespace: Mapping[int, Sequence[Any]],
                     operation: str, summary: Mapping[str, Any] | None = None,
                     counts: dict[int, int] | None = None) -> int:
    """Delete memories in one transaction (all or nothing, one audit entry per namespace)
    through the write path (apps/memories/writes.py), which unindexes them per namespace
    once it is done. ``counts`` (if given) gets each namespace's deletions."""
    namespaces = Namespace.objects.in_bulk(list(by_namespace))
    deleted = 0
    released: list[str] = []

    def entry(namespace: Namespace, ids: Sequence[Any], removed: int) -> None:
        # A deleted survivor's merged memories are current again: named, as what changed.
        audit(principal, operation, namespace=namespace, record_ids=ids,
              summary={**(summary or {}), "count": removed,
                       **({"released": released} if released else {})})

    with writes.atomic() as write:
        for ns_id, pks in by_namespace.items():
            released[:] = superseded_by_any(ns_id, pks)
            removed = write.delete(namespaces[ns_id], pks, actor=principal, audit=entry)
            deleted += removed
            if counts is not None:
                counts[ns_id] = removed
    return deleted


def superseded_by_any(namespace_id: int, ids: Sequence[Any]) -> list[str]:
    """The memories outside ``ids`` that one of ``ids`` superseded (a consolidation's
    members): deleting their survivor makes them current again."""
    found: list[str] = []
    for part in stores.chunks(list(ids)):
        found += [str(pk) for pk in Memory.objects.in_namespace_checked(
            namespace_id).filter(superseded_by__in=part).exclude(pk__in=part)
            .order_by("pk").values_list("pk", flat=True)]
    return sorted(set(found) - {str(i) for i in ids})
