"""Reading the timeline: browse a level over a range, open a node (its children and
grips), expand a grip (its source with the memories around it in conversation order).

Every door (REST, MCP) calls these with a ``Principal``. A reader of the namespace may
read its timeline; another tenant's node or grip is a 404, as if it did not exist. A
sharing grant does not reach the timeline: a summary mixes memories a grant's scope may
leave out.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from rest_framework import serializers

from apps.core.errors import InvalidInput, NotFound
from apps.core.kinds import MemoryKind
from apps.core.roles import Action
from apps.core.validation import DateOrDateTimeField
from apps.memories.models import Memory
from apps.tenancy.principal import Principal
from apps.tenancy.services import AGENT_ID_RE, authorize, resolve_namespace
from apps.timeline import conf, periods
from apps.timeline.models import Grip, Level, RollupNode

_COUNT = re.compile(r"[0-9]{1,4}", re.ASCII)
#: What ``level`` takes (``segment`` too: a day's stretches of conversation).
LEVELS = tuple(Level.values)


@dataclass(frozen=True)
class OpenedNode:
    node: RollupNode
    children: list[RollupNode]
    grips: list[Grip]


@dataclass(frozen=True)
class ExpandedGrip:
    grip: Grip
    before: list[Memory]
    source: Memory
    after: list[Memory]


def _moment(params: Mapping[str, Any], name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """``from`` / ``to``: a date (``to``: through the end of that day) or a date-time, in
    the years the timeline covers (1 to 9998, UTC: periods.LIMIT)."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = DateOrDateTimeField().run_validation(raw)
    except (serializers.ValidationError, OverflowError):
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 date-time.",
                           field=name) from None
    if not periods.covered(moment):
        raise InvalidInput(f"{name} must be in the years 1 to 9998 (UTC): the timeline covers "
                           "no later period.", field=name)
    if end_of_day and isinstance(raw, str) and len(raw) == 10:
        moment += dt.timedelta(days=1)
    return moment


def browse(principal: Principal, params: Mapping[str, Any]) -> QuerySet[RollupNode]:
    """The nodes of one level whose period overlaps [from, to), oldest first.

    ``level``: segment, day (default), week, month or year; ``from`` / ``to``: a date or a
    date-time (a date ``to`` includes that day); ``agent_id``: an agent's own timeline
    (absent: the whole namespace's); ``namespace``: for system-admin keys.
    """
    level = params.get("level", Level.DAY)  # present but empty is a mistake, not the default
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}.", field="level")
    start, end = _moment(params, "from"), _moment(params, "to", end_of_day=True)
    if start is not None and end is not None and end <= start:
        raise InvalidInput("to must be after from.", field="to")
    agent_id = params.get("agent_id")
    if agent_id is not None and not AGENT_ID_RE.match(agent_id):
        raise InvalidInput("agent_id must be 1-128 characters: letters, digits, '_', '.', "
                           "'@', '-'.", field="agent_id")
    namespace = resolve_namespace(principal, params.get("namespace") or None)
    authorize(principal, namespace.pk, Action.READ)
    nodes = RollupNode.objects.filter(namespace=namespace, agent_id=agent_id or "", level=level)
    if start is not None:
        nodes = nodes.filter(Q(end__gt=start) | Q(level=Level.SEGMENT, end__gte=start))
    if end is not None:
        nodes = nodes.filter(start__lt=end)
    return nodes.select_related("namespace").order_by("start", "session_id", "id")


def _pk(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def open_node(principal: Principal, node_id: Any) -> OpenedNode:
    """A node with its children (the next level down, in time order) and its grips, those
    of expired sources left out (an expired memory is served nowhere)."""
    node = (RollupNode.objects.for_principal(principal).select_related("namespace")
            .filter(pk=_pk(node_id, "timeline node")).first())
    if node is None:
        raise NotFound("timeline node not found.")
    authorize(principal, node.namespace_id, Action.READ)
    children = list(RollupNode.objects.filter(parent=node).select_related("namespace")
                    .order_by("start", "session_id", "id"))
    grips = list(Grip.objects.filter(node=node, memory__in=Memory.objects.live().filter(
        namespace_id=node.namespace_id)).select_related("node", "memory").order_by("position"))
    return OpenedNode(node, children, grips)


def _count(params: Mapping[str, Any], name: str) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return conf.EXPAND_DEFAULT
    text = str(raw)
    if not _COUNT.fullmatch(text) or int(text) > conf.EXPAND_MAX:
        raise InvalidInput(f"{name} must be a whole number from 0 to {conf.EXPAND_MAX}.",
                           field=name)
    return int(text)


def expand_grip(principal: Principal, grip_id: Any, params: Mapping[str, Any]) -> ExpandedGrip:
    """The grip's source memory with up to ``before`` memories before it and ``after``
    after it (default 5 each, at most 50), in conversation order: the same session,
    by event time (``occurred_at``, else ``created_at``), then storage order. A memory
    stored without a session is shown among its agent's memories without one. Summaries
    and expired memories are left out."""
    before, after = _count(params, "before"), _count(params, "after")
    grip = (Grip.objects.for_principal(principal).select_related("node", "node__namespace")
            .filter(pk=_pk(grip_id, "grip")).first())
    if grip is None:
        raise NotFound("grip not found.")
    authorize(principal, grip.node.namespace_id, Action.READ)
    source = Memory.objects.live().select_related("namespace").filter(pk=grip.memory_id).first()
    if source is None:  # deleted a moment ago (its grips go with it), or expired
        raise NotFound("grip not found.")
    grip.memory = source
    around = (Memory.objects.live().filter(namespace_id=source.namespace_id,
                                           session_id=source.session_id)
              .exclude(kind=MemoryKind.SUMMARY).exclude(pk=source.pk)
              .select_related("namespace").annotate(at=Coalesce("occurred_at", "created_at")))
    if not source.session_id:
        around = around.filter(agent_id=source.agent_id)
    at, created = source.occurred_at or source.created_at, source.created_at
    earlier = (Q(at__lt=at) | Q(at=at, created_at__lt=created)
               | Q(at=at, created_at=created, pk__lt=source.pk))
    preceding = list(around.filter(earlier).order_by("-at", "-created_at", "-pk")[:before])
    following = list(around.exclude(earlier).order_by("at", "created_at", "pk")[:after])
    return ExpandedGrip(grip, preceding[::-1], source, following)
