"""The timeline's settings, read at call time through the typed accessor
(``apps.core.conf.rollups()``; ``override_settings`` reaches them, the system check E010
refuses bad values at start), and the timeline's fixed bounds.
"""

from __future__ import annotations

from apps.core import conf as core_conf

#: A segment holds at most this many memories (a busy session's day is cut into several),
#: so every summariser call has a bounded input and a grip a nearby context.
SEGMENT_MAX_SOURCES = 200
#: ``expand``'s largest ``before`` / ``after``, and their default.
EXPAND_MAX = 50
EXPAND_DEFAULT = 5
#: The most grips one part of a node above segments carries through from its children.
GRIPS_PER_PART = 10


def scheduled() -> bool:
    """``MEMORYWEB_ROLLUPS_SCHEDULED``: the job builds namespaces that hold events."""
    return core_conf.rollups().scheduled


def interval_minutes() -> int:
    return core_conf.rollups().interval_minutes


def segment_gap_minutes() -> int:
    return core_conf.rollups().segment_gap_minutes


def max_chars(level: str) -> int:
    """The longest summary of ``level`` (segment, day, week, month, year)."""
    return getattr(core_conf.rollups().max_chars, level)
