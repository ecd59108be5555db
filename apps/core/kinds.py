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
