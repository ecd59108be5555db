"""A namespace's ``rollups`` setting: whether the scheduled job builds its timeline, how
often, and for which agents besides the whole namespace. Timeline's rule, stored on
tenancy's namespace row and checked through tenancy's registry
(apps/tenancy/namespace_settings.py), registered from ``TimelineConfig.ready``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from apps.core.validation import StrictSerializer, validate
from apps.timeline import conf

#: ``rollups.agents``: the agents that get a tree of their own, at most this many.
MAX_AGENTS = 20


class RollupSettings(StrictSerializer):
    """A namespace's ``rollups``: every field optional (absent: the server's setting)."""

    enabled = serializers.BooleanField(
        required=False, help_text="Build this namespace's timeline on schedule (absent: "
        "when MEMORYWEB_ROLLUPS_SCHEDULED is on and the namespace holds conversation "
        "events). manage.py rollup works either way.")
    interval_minutes = serializers.IntegerField(
        required=False, min_value=5, max_value=10080,
        help_text="Minutes between scheduled builds (absent: MEMORYWEB_ROLLUP_INTERVAL_MINUTES).")
    agents = serializers.ListField(
        child=serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$", max_length=128),
        required=False, max_length=MAX_AGENTS,
        help_text="Agents that also get a timeline of their own memories.")


def validate_rollup_settings(value: Any) -> dict[str, Any]:
    """The ``rollups`` value checked and normalised (plain JSON); None or "" is {}."""
    if value in (None, ""):
        return {}
    cleaned = validate(RollupSettings, value, prefix="rollups")
    if "agents" in cleaned:
        cleaned["agents"] = list(dict.fromkeys(cleaned["agents"]))
    return cleaned


@dataclass(frozen=True)
class Schedule:
    #: The namespace's own choice; None: the server's rule (apps/timeline/tasks.py).
    enabled: bool | None
    interval_minutes: int
    agents: tuple[str, ...]


def schedule_of(namespace: Any) -> Schedule:
    """What the job does for ``namespace``: its ``rollups`` setting over the server's."""
    own = namespace.rollups or {}
    return Schedule(enabled=own.get("enabled"),
                    interval_minutes=int(own.get("interval_minutes") or conf.interval_minutes()),
                    agents=tuple(own.get("agents") or ()))
