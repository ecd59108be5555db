"""Which memories name a data subject: the one rule export, erasure and the dashboard's
subject filter share (a second copy of it would let a lookup and an erasure disagree)."""

from __future__ import annotations

import re

from django.db.models import Q, QuerySet

from apps.memories.models import Memory

#: The metadata key that names a data subject (a person the memories are about).
SUBJECT_KEY = "subject_id"


def naming_subject(subject_id: str) -> QuerySet[Memory]:
    """Memories whose metadata ``subject_id`` equals ``subject_id`` (as a string, or the
    same id stored as a number), now or before an edit took it out: a version keeps the
    old metadata, and a revert would bring the subject back. Every namespace: callers
    narrow it to theirs."""
    values: list[str | int] = [subject_id]
    if re.fullmatch(r"-?\d{1,18}", subject_id):
        values.append(int(subject_id))
    match = Q()
    for named in values:
        match |= Q(**{f"metadata__{SUBJECT_KEY}": named})
        match |= Q(**{f"versions__changes__metadata__before__{SUBJECT_KEY}": named})
    return Memory.objects.filter(match)
