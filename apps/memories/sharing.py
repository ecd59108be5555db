"""What sharing grants expose, in the three forms recall needs.

A grant's scope (tags, kinds, a window on ``created_at``) is pushed into Chroma as a
``where`` clause and into SQL as a condition, so the grantor's other memories are
never even candidates; fetched rows are checked against the grants once more, so a
stale vector-index entry (tags just edited, say) cannot widen what is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Q

from apps.core.roles import Action
from apps.memories.models import Memory, MemoryKind, MemoryTag
from apps.memories.vectorstore import TAG_KEY
from apps.tenancy.grants import live_grants_to
from apps.tenancy.models import Namespace, SharingGrant
from apps.tenancy.principal import Principal


@dataclass
class Source:
    """A namespace a recall searches: the caller's own (no grants) or a grantor."""

    namespace: Namespace
    #: Live grants that open this namespace to the caller; empty for its own namespace.
    grants: list[SharingGrant] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return bool(self.grants)

    @property
    def unrestricted(self) -> bool:
        return not self.grants or any(g.is_unrestricted for g in self.grants)

    def covers(self, memory: Memory) -> bool:
        if memory.namespace_id != self.namespace.pk:
            return False
        return not self.grants or any(g.covers(memory) for g in self.grants)

    def where(self) -> dict | None:
        """The scope as a Chroma ``where`` clause (None: the whole namespace)."""
        if self.unrestricted:
            return None
        scopes = [_grant_where(g) for g in self.grants]
        return scopes[0] if len(scopes) == 1 else {"$or": scopes}

    def restrict(self, queryset):
        """The scope as a condition on a Memory queryset."""
        if self.unrestricted:
            return queryset
        condition = Q()
        for grant in self.grants:
            condition |= _grant_q(grant)
        return queryset.filter(condition)


def _grant_where(grant: SharingGrant) -> dict:
    clauses: list[dict] = []
    if not grant.kinds and not grant.is_unrestricted:  # SharingGrant.covers_fields: summaries
        clauses.append({"kind": {"$ne": MemoryKind.SUMMARY.value}})
    if grant.tags:
        tags = [{TAG_KEY + tag: True} for tag in grant.tags]
        clauses.append(tags[0] if len(tags) == 1 else {"$or": tags})
    if grant.kinds:
        clauses.append({"kind": {"$in": list(grant.kinds)}})
    if grant.created_after:
        clauses.append({"created_ts": {"$gte": grant.created_after.timestamp()}})
    if grant.created_before:
        clauses.append({"created_ts": {"$lt": grant.created_before.timestamp()}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _grant_q(grant: SharingGrant) -> Q:
    condition = Q(namespace_id=grant.grantor_id)
    if grant.tags:
        condition &= Q(pk__in=MemoryTag.objects.filter(namespace_id=grant.grantor_id,
                                                      tag__in=grant.tags).values("memory_id"))
    if grant.kinds:
        condition &= Q(kind__in=grant.kinds)
    elif not grant.is_unrestricted:  # summaries only where the kinds name them (covers_fields)
        condition &= ~Q(kind=MemoryKind.SUMMARY)
    if grant.created_after:
        condition &= Q(created_at__gte=grant.created_after)
    if grant.created_before:
        condition &= Q(created_at__lt=grant.created_before)
    return condition


def sources(namespace: Namespace, include_shared: bool) -> list[Source]:
    """The namespace itself, then (with ``include_shared``) each grantor with its grants."""
    found = [Source(namespace)]
    if include_shared:
        by_grantor = live_grants_to([namespace.pk])
        found += [Source(grants[0].grantor, grants) for _, grants in sorted(by_grantor.items())]
    return found


def shared_with(principal: Principal) -> Q | None:
    """Memories shared with any namespace the principal may read, as a condition
    (None when nothing is shared with it). System admins read everything anyway."""
    grantees = principal.namespace_ids(Action.READ)
    if principal.is_system_admin or not grantees:
        return None
    grants: Sequence[SharingGrant] = [g for gs in live_grants_to(grantees).values() for g in gs]
    if not grants:
        return None
    condition = Q()
    for grant in grants:
        condition |= _grant_q(grant)
    return condition
