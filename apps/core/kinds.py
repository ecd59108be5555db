"""The kinds of memory: a vocabulary more than one layer speaks.

Memories are stored with a kind; tenancy's sharing grants can be narrowed to kinds
(``SharingGrant.kinds``), and tenancy sits below memories — so the list lives here.
``apps.memories.models.MemoryKind`` is the same class.
"""

from __future__ import annotations

from django.db import models


class MemoryKind(models.TextChoices):
    FACT = "fact"
    PREFERENCE = "preference"
    EPISODE = "episode"
    PROCEDURE = "procedure"
    OBSERVATION = "observation"
    SUMMARY = "summary"
    NOTE = "note"
    #: A conversation event captured from an agent's hooks (``POST /api/v1/events``):
    #: only that route stores it, with its ``event_type`` and ``role`` (issue 20).
    EVENT = "event"


#: The kinds a memory may be stored with: all but ``event``, which only conversation events
#: have (they come through ``POST /api/v1/events``, idempotent and append-only).
STORABLE_KINDS = [(value, label) for value, label in MemoryKind.choices if value != MemoryKind.EVENT]
