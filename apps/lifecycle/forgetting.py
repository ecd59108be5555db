"""Controlled forgetting: memories whose strength stays low are proposed, never deleted.

The daily ``review_strength`` job computes every memory's strength (apps/memories/
strength.py). A memory below ``MEMORYWEB_FORGET_FLOOR`` is *watched* (a
:class:`WeakMemory` row, from the first review that found it weak); one still below it
``MEMORYWEB_FORGET_AFTER_DAYS`` later is *proposed* for forgetting in the namespace's
review list. A memory that recovers (recalled, edited, its conflict resolved) leaves the
list. A team admin then either **dismisses** a proposal (kept; not proposed again while
it stays weak) or **requests forgetting**: an erasure request for those ids through
privacy's path (approval, execution, a certificate), so nothing is ever forgotten
silently. Events and summaries are not reviewed (a conversation log and the timeline's
own text).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, validate
from apps.lifecycle.models import WeakMemory
from apps.memories import stores, strength
from apps.memories.models import Memory
from apps.memories.track_record import NOT_COUNTED_KINDS
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest, ErasureState
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace

State = WeakMemory.State

#: The review list, in the registry of stores (apps/memories/stores.py).
REVIEW_LIST = stores.Store(
    "forgetting_review", "the forgetting review list",
    "lifecycle_weakmemory: memories whose strength is below the floor, with their strength, "
    "since when, and a person's decision (ids and numbers, never content).",
    stores.ErasedBy.CASCADE, models=(WeakMemory,),
    count=lambda namespace, ids=None: (
        WeakMemory.objects.filter(namespace=namespace).count() if ids is None else
        stores.count_in(WeakMemory.objects.filter(namespace=namespace), "memory_id", ids)),
    remaining=lambda namespace, erased: None if namespace is None else stores.count_in(
        WeakMemory.objects.all(), "memory_id", erased.ids))


def register_stores() -> None:
    """Called by ``LifecycleConfig.ready``."""
    stores.register(REVIEW_LIST)
#: Memories whose strength one review step computes at once (two queries each).
CHUNK = 1000
#: The most ids one request for forgetting or one dismissal names.
MAX_IDS = 1000


def review(namespace: Namespace, now: datetime | None = None, *, progress=None) -> dict[str, int]:
    """One namespace's review: watch the weak, propose the long weak, drop the recovered.
    Returns counts (watched, proposed, recovered, reviewed)."""
    now = now or timezone.now()
    floor = settings.MEMORYWEB_FORGET_FLOOR
    reviewed = watched = recovered = 0
    memories = Memory.objects.live().filter(namespace=namespace).exclude(
        kind__in=NOT_COUNTED_KINDS).order_by("pk")
    last = None
    while True:
        page = memories if last is None else memories.filter(pk__gt=last)
        chunk = list(page[:CHUNK])
        if not chunk:
            break
        last = chunk[-1].pk
        found = strength.for_memories(namespace, chunk, now=now)
        weak = {pk: s.value for pk, s in found.items() if s.value < floor}
        strong = [pk for pk, s in found.items() if s.value >= floor]
        with transaction.atomic():
            # A row recorded under another namespace (its memory moved: a namespace merge
            # or its revert) is dropped and the memory judged here afresh.
            WeakMemory.objects.filter(memory_id__in=list(found)).exclude(
                namespace=namespace).delete()
            known = {str(row.memory_id): row for row in WeakMemory.objects.filter(
                memory_id__in=list(found))}
            new = [WeakMemory(namespace=namespace, memory_id=pk, strength=value,
                              below_since=now, checked_at=now)
                   for pk, value in weak.items() if pk not in known]
            WeakMemory.objects.bulk_create(new)
            still = [known[pk] for pk in weak if pk in known]
            for row in still:
                row.strength, row.checked_at = weak[str(row.memory_id)], now
            WeakMemory.objects.bulk_update(still, ["strength", "checked_at"])
            recovered += WeakMemory.objects.filter(
                memory_id__in=[pk for pk in strong if pk in known]).exclude(
                state=State.REQUESTED).delete()[0]
        watched += len(new)
        reviewed += len(chunk)
        if progress:
            progress(len(chunk))
    cutoff = now - timedelta(days=settings.MEMORYWEB_FORGET_AFTER_DAYS)
    with transaction.atomic():
        # A request for forgetting that was rejected: proposed again (a person said no to
        # the erasure, not to the review; dismiss keeps a memory for good).
        rejected = ErasureRequest.objects.filter(
            namespace=namespace, state=ErasureState.REJECTED).values("pk")
        WeakMemory.objects.filter(namespace=namespace, state=State.REQUESTED,
                                  erasure_request__in=rejected).update(
            state=State.PROPOSED, erasure_request=None)
        proposed = WeakMemory.objects.filter(namespace=namespace, state=State.WATCHING,
                                             below_since__lte=cutoff).update(state=State.PROPOSED)
        if watched or proposed or recovered:
            audit("system:lifecycle", "forgetting.review", namespace=namespace,
                  summary={"reviewed": reviewed, "watched": watched, "proposed": proposed,
                           "recovered": recovered})
    return {"reviewed": reviewed, "watched": watched, "proposed": proposed,
            "recovered": recovered}


# --- the review list ----------------------------------------------------------------------

def _managed(principal: Principal, slug: str) -> Namespace:
    namespace = resolve_namespace(principal, slug)
    authorize(principal, namespace.pk, Action.EDIT)
    return namespace


def review_list(principal: Principal, slug: str, state: str = State.PROPOSED,
                limit: int = 100) -> dict[str, Any]:
    """The namespace's weak memories in ``state`` (team admin), weakest first."""
    namespace = _managed(principal, slug)
    if state not in State.values:
        raise InvalidInput(f"state must be one of {', '.join(State.values)}.", field="state")
    rows = WeakMemory.objects.filter(namespace=namespace, memory__namespace=namespace,
                                     state=state).select_related(
        "memory").order_by("strength", "memory_id")
    return {"namespace": namespace.slug, "state": state,
            "floor": settings.MEMORYWEB_FORGET_FLOOR,
            "after_days": settings.MEMORYWEB_FORGET_AFTER_DAYS, "count": rows.count(),
            "results": [_row(row) for row in rows[:limit]]}


def _row(row: WeakMemory) -> dict[str, Any]:
    memory = row.memory
    return {"id": str(memory.pk), "content": memory.content, "agent_id": memory.agent_id,
            "kind": memory.kind, "strength": round(row.strength, 4),
            "below_since": row.below_since, "checked_at": row.checked_at, "state": row.state,
            "erasure_request": str(row.erasure_request) if row.erasure_request else None,
            "superseded_by": str(memory.superseded_by_id) if memory.superseded_by_id else None}


class DecisionInput(StrictSerializer):
    ids = serializers.ListField(child=serializers.UUIDField(), min_length=1,
                                max_length=MAX_IDS, help_text="Proposed memories.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="Why (kept with the erasure request).")


def _proposed(namespace: Namespace, ids: list[Any]) -> list[WeakMemory]:
    wanted = {str(pk) for pk in ids}
    rows = list(WeakMemory.objects.select_for_update().filter(
        namespace=namespace, memory__namespace=namespace, state=State.PROPOSED,
        memory_id__in=list(wanted)))
    missing = sorted(wanted - {str(row.memory_id) for row in rows})
    if missing:
        raise InvalidInput(f"not proposed for forgetting in {namespace.slug!r}: {missing[0]}"
                           + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                           + ".", field="ids")
    return rows


def request_forgetting(principal: Principal, slug: str, data: Any):
    """An erasure request for proposed memories (approved, executed and certified as
    every erasure is); the proposals are marked ``requested``."""
    namespace = _managed(principal, slug)
    cleaned = validate(DecisionInput, data)
    with transaction.atomic():
        rows = _proposed(namespace, cleaned["ids"])
        request = erasure.create(principal, {
            "namespace": namespace.slug, "ids": [str(row.memory_id) for row in rows],
            "reason": cleaned.get("reason") or "forgetting: strength below "
                      f"{settings.MEMORYWEB_FORGET_FLOOR} for "
                      f"{settings.MEMORYWEB_FORGET_AFTER_DAYS} days"})
        WeakMemory.objects.filter(pk__in=[row.pk for row in rows]).update(
            state=State.REQUESTED, erasure_request=request.pk, decided_by=principal.label)
    return request


def dismiss(principal: Principal, slug: str, data: Any) -> int:
    """Keep proposed memories: not proposed again while they stay weak. Audited."""
    namespace = _managed(principal, slug)
    cleaned = validate(DecisionInput, data)
    with transaction.atomic():
        rows = _proposed(namespace, cleaned["ids"])
        WeakMemory.objects.filter(pk__in=[row.pk for row in rows]).update(
            state=State.DISMISSED, decided_by=principal.label)
        audit(principal, "forgetting.dismiss", namespace=namespace,
              record_ids=[row.memory_id for row in rows],
              summary={"dismissed": len(rows), "reason": cleaned.get("reason", "")[:200]})
    return len(rows)
