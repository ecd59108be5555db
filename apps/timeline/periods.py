"""Periods in UTC: the bounds of a day, an ISO week (Monday first), a month and a year,
how a day's memories fall into segments, and how a node is named in words.

UTC, not a namespace's time zone: one rule for every tenant and every door, and a day
that never has 23 or 25 hours. A client shows the periods in its own zone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from apps.timeline.models import Level

UTC = dt.UTC
#: The event times a timeline covers: years 1 to 9998 (UTC). Every period holding a day
#: of them — down to a December week, month and year — ends before the calendar's last
#: representable moment; a memory dated later (9999) is left out of the timeline's inputs.
FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LIMIT = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Row:
    """What a build knows of an input memory before it reads its content."""

    id: uuid.UUID
    version: int
    at: dt.datetime  # event time: occurred_at, else created_at (UTC)
    session_id: str


class OutOfRange(ValueError):
    """A day outside the years the timeline covers (:data:`FIRST` … :data:`LIMIT`)."""


def covered(moment: dt.datetime) -> bool:
    """Whether a moment is in the years the timeline covers."""
    return FIRST <= moment < LIMIT


def covered_day(day: dt.date) -> bool:
    return FIRST.date() <= day < LIMIT.date()


def day_of(moment: dt.datetime) -> dt.date:
    return moment.astimezone(UTC).date()


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


def bounds(level: str, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the day, ISO week, month or year holding ``day``. A day outside the
    covered years is :class:`OutOfRange` (its period could end past the calendar)."""
    if not covered_day(day):
        raise OutOfRange(f"{day} is outside the years the timeline covers (1 to 9998)")
    if level == Level.DAY:
        return midnight(day), midnight(day + dt.timedelta(days=1))
    if level == Level.WEEK:
        monday = day - dt.timedelta(days=day.weekday())
        return midnight(monday), midnight(monday + dt.timedelta(days=7))
    if level == Level.MONTH:
        first = day.replace(day=1)
        following = (first.replace(year=first.year + 1, month=1) if first.month == 12
                     else first.replace(month=first.month + 1))
        return midnight(first), midnight(following)
    if level == Level.YEAR:
        return midnight(dt.date(day.year, 1, 1)), midnight(dt.date(day.year + 1, 1, 1))
    raise ValueError(f"no calendar period for level {level!r}")


def start_of(level: str, day: dt.date) -> dt.datetime:
    return bounds(level, day)[0]


def segments(rows: Sequence[Row], gap_minutes: int, max_sources: int) -> list[list[Row]]:
    """One day's memories (in time order) cut into segments: per session (memories
    without one form their own stream), a new segment after a pause longer than
    ``gap_minutes`` or once a segment holds ``max_sources`` memories. In order of start."""
    gap = dt.timedelta(minutes=gap_minutes)
    streams: dict[str, list[list[Row]]] = {}
    for row in rows:
        stream = streams.setdefault(row.session_id, [])
        current = stream[-1] if stream else None
        if current is None or row.at - current[-1].at > gap or len(current) >= max_sources:
            stream.append([row])
        else:
            current.append(row)
    found = [segment for stream in streams.values() for segment in stream]
    return sorted(found, key=lambda segment: (segment[0].at, segment[0].session_id))


def title(level: str, start: dt.datetime, end: dt.datetime, session_id: str = "",
          agent_id: str = "") -> str:
    """The node in words, for its summary memory's first line: "Day 2024-03-05 (UTC)"."""
    whose = f" of agent {agent_id}" if agent_id else ""
    if level == Level.SEGMENT:
        session = f"session {session_id}" if session_id else "memories without a session"
        return (f"Segment{whose}, {session}, {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC")
    if level == Level.DAY:
        return f"Day{whose} {start:%Y-%m-%d} (UTC)"
    if level == Level.WEEK:
        year, week, _ = start.date().isocalendar()
        last = end - dt.timedelta(days=1)
        return f"Week{whose} {year}-W{week:02d} ({start:%Y-%m-%d} to {last:%Y-%m-%d}, UTC)"
    if level == Level.MONTH:
        return f"Month{whose} {start:%Y-%m} (UTC)"
    return f"Year{whose} {start:%Y} (UTC)"


def days_between(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def week_parent_month(week_start: dt.datetime, months: set[dt.datetime],
                      days: Iterable[dt.date]) -> dt.datetime | None:
    """The month a week hangs under in the tree: the one holding its Thursday (ISO's rule
    for the year a week belongs to), else the month of its first day that has memories."""
    thursday = week_start.date() + dt.timedelta(days=3)
    candidates = [start_of(Level.MONTH, thursday), *(start_of(Level.MONTH, d) for d in sorted(days))]
    return next((month for month in candidates if month in months), None)
