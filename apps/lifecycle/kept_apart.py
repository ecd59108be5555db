"""Memories a person said are not the same (docs/lifecycle.md, "Kept apart"): rejecting a
consolidation proposal for good. Each pair of the rejected group becomes a ``kept_apart``
link (``MemoryLink``, the ``memory_links`` store: erased, moved and exported with the
memories), and consolidation never groups a kept-apart pair again — not a later dry run,
not an applied run, not the schedule, not another door; ``merge`` refuses one. Allowing
them together again removes the links. Both are audited, ids only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Q
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput, NotFound
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, validate
from apps.memories import writes
from apps.memories.models import Memory, MemoryLink
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, check_writable, resolve_namespace

#: The most memories one rejection names (a proposal holds at most grouping.MAX_GROUP).
MAX_MEMBERS = 20


class KeepApartInput(StrictSerializer):
    members = serializers.ListField(
        child=serializers.UUIDField(), min_length=2, max_length=MAX_MEMBERS,
        help_text="Memories of the namespace (2 to 20): every pair of them is kept apart "
        "(or, allowed together, no longer).")


def pairs_in(ns: Namespace, ids: Iterable[Any] | None = None) -> frozenset[frozenset[str]]:
    """The namespace's kept-apart pairs (of these ids, when given: direct links only), as
    id pairs. Without ``ids``, each pair also as the pair of the memories its two ends
    were merged into since (followed to the current survivor): a memory kept apart from
    one merged into C is kept apart from C, so it never joins C's group."""
    links = MemoryLink.objects.filter(namespace=ns, relation=MemoryLink.Relation.KEPT_APART)
    if ids is not None:
        wanted = [str(i) for i in ids]
        links = links.filter(Q(source_id__in=wanted) & Q(target_id__in=wanted))
    pairs = [(str(a), str(b)) for a, b in links.values_list("source_id", "target_id")]
    if ids is not None or not pairs:
        return frozenset(frozenset(pair) for pair in pairs)
    above = {str(pk): str(by) for pk, by in Memory.objects.filter(
        namespace=ns, superseded_by__isnull=False).values_list("pk", "superseded_by")}

    def root(pk: str) -> str:
        seen = {pk}
        while pk in above and above[pk] not in seen:
            pk = above[pk]
            seen.add(pk)
        return pk

    found = {frozenset(pair) for pair in pairs}
    found |= {frozenset((root(a), root(b))) for a, b in pairs if root(a) != root(b)}
    return frozenset(found)


def keep_apart(principal: Principal, namespace: str | None, data: Any, *,
               apart: bool = True) -> tuple[list[str], int]:
    """Keep these memories of the namespace apart (team admin): every pair of them is never
    grouped by consolidation; with ``apart=False``, allow them together again.
    ``data``: ``{"members": [ids]}``. Returns the memories and the links added (or
    removed). 400 for fewer than 2 (distinct) or more than ``MAX_MEMBERS``, 404 when one
    is not a live memory of the namespace."""
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    cleaned = validate(KeepApartInput, data)
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.EDIT)
    check_writable(ns)
    wanted = sorted(dict.fromkeys(str(m) for m in cleaned["members"]))
    if len(wanted) < 2:
        raise InvalidInput("give 2 different memories at least.", field="members")
    with writes.atomic() as write:
        # Locked, so an erasure cannot take one between this check and the links.
        found = {str(pk) for pk in Memory.objects.live().select_for_update().filter(
            namespace=ns, pk__in=wanted).order_by("pk").values_list("pk", flat=True)}
        if len(found) != len(wanted):
            raise NotFound("a memory is not a memory of this namespace (deleted or erased?).",
                           field="members")
        changed = write.keep_apart(ns, list(itertools.combinations(wanted, 2)),
                                   actor=principal, apart=apart)
        if changed:
            audit(principal, "memory.keep_apart" if apart else "memory.allow_together",
                  namespace=ns, record_ids=wanted, summary={"pairs": changed})
    return wanted, changed
