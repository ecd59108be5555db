"""Which memories name a data subject: the one rule export, erasure and the dashboard's
subject filter share (a second copy of it would let a lookup and an erasure disagree)."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q, QuerySet

from apps.memories import sealing
from apps.memories.models import Memory, MemoryVersion

#: The metadata key that names a data subject (a person the memories are about).
SUBJECT_KEY = "subject_id"


def naming_subject(subject_id: str, namespaces: Any = None) -> QuerySet[Memory]:
    """Memories whose metadata ``subject_id`` equals ``subject_id`` (as a string, or the
    same id stored as a number), now or before an edit took it out: a version keeps the
    old metadata, and a revert would bring the subject back. Every namespace unless
    ``namespaces`` (ids, or a queryset of them) says which: callers narrow the result to
    theirs, and should say so here too, so that an encrypted namespace is only read (its
    key only needed) when it is one of them."""
    values: list[str | int] = [subject_id]
    if re.fullmatch(r"-?\d{1,18}", subject_id):
        values.append(int(subject_id))
    match = Q()
    for named in values:
        match |= Q(**{f"metadata__{SUBJECT_KEY}": named})
        match |= Q(**{f"versions__changes__metadata__before__{SUBJECT_KEY}": named})
    return Memory.objects.filter(match | _in_encrypted_namespaces(values, namespaces))


def _in_encrypted_namespaces(values: list[str | int], namespaces: Any) -> Q:
    """The same rule where metadata and versions are sealed (docs/encryption.md): the
    subject's blind token in ``metadata_blind``, and the versions opened and read — they
    cannot be queried sealed; an erasure or export is rare enough to pay the scan. A key
    that is gone raises (fail closed): a lookup must not report "none" for data it
    cannot read."""
    encrypted, match = sealing.blind_match(f"metadata_blind__{SUBJECT_KEY}__in", values,
                                           namespaces)
    if not encrypted:
        return match
    named_before: set = set()
    versions = MemoryVersion.objects.filter(memory__namespace_id__in=encrypted).select_related(
        "memory").only("memory_id", "version", "changes", "memory__id", "memory__namespace_id")
    for version in versions.iterator(chunk_size=1000):
        before = ((version.changes or {}).get("metadata") or {}).get("before") or {}
        if isinstance(before, dict) and before.get(SUBJECT_KEY) in values:
            named_before.add(version.memory_id)
    return match | Q(pk__in=named_before) if named_before else match
