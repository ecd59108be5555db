"""A namespace's ``consolidation`` setting: whether the scheduled job merges the memories
that say the same thing there, how often, at which threshold. Lifecycle's rule, stored on
tenancy's namespace row and checked through tenancy's registry
(apps/tenancy/namespace_settings.py), registered from ``LifecycleConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.validation import StrictSerializer, validate
from apps.lifecycle import merged_text

#: ``interval_hours`` when the setting does not say.
DEFAULT_INTERVAL_HOURS = 24


class ConsolidationSettings(StrictSerializer):
    """A namespace's ``consolidation``: off unless ``enabled``."""

    enabled = serializers.BooleanField(
        required=False, help_text="Merge this namespace's memories that say the same thing "
        "on schedule (each merge reversible: unmerge). Absent or false: only on request.")
    interval_hours = serializers.IntegerField(
        required=False, min_value=1, max_value=720,
        help_text=f"Hours between scheduled runs (default {DEFAULT_INTERVAL_HOURS}).")
    threshold = serializers.FloatField(
        required=False, min_value=0.5, max_value=1.0,
        help_text="The similarity at which two memories say the same thing (default "
        "MEMORYWEB_CONSOLIDATE_THRESHOLD).")
    merged_text = serializers.ChoiceField(
        choices=merged_text.CHOICES, required=False,
        help_text="What a merged memory says when a consolidation does not ask: `member` "
        "(default), the survivor's own text; `summary`, the summarizer's text of the group "
        "(docs/lifecycle.md, \"Merged text\").")


def validate_consolidation_settings(value: Any) -> dict[str, Any]:
    """The ``consolidation`` value checked and normalised (plain JSON); None or "" is {}."""
    if value in (None, ""):
        return {}
    return validate(ConsolidationSettings, value, prefix="consolidation")
