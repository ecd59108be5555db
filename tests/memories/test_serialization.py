"""The hand-written memory rendering matches DRF's generic one, field for field."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from apps.memories.api.serializers import MemorySerializer
from apps.memories.models import Memory


def test_fast_rendering_matches_drf(stored):
    soon = timezone.now() + timedelta(days=3)
    data = stored("rendering check", kind="episode", tags=["a", "b"], metadata={"k": [1, {"x": None}]},
                  session_id="s-1", importance=0.25, confidence=0.75, expires_at=soon.isoformat(),
                  valid_from="2026-01-01T10:00:00+02:00")
    memory = Memory.objects.select_related("namespace").get(pk=data["id"])
    memory.last_recalled_at = timezone.now()
    fast = MemorySerializer(memory).data
    generic = serializers.ModelSerializer.to_representation(MemorySerializer(), memory)
    assert dict(fast) == dict(generic)
    assert list(fast) == MemorySerializer.Meta.fields
