"""The end-of-day digest: one day's summary of a namespace (or of one agent), with grips
to its sources (docs/lifecycle.md).

The digest *is* the timeline's day node (apps/timeline): asking for it builds that day's
segments and day node now — only that day, not the week, month and year above it — and
answers the node with its grips. Nothing new is stored beside the timeline, so the
digest has the timeline's guarantees for free: idempotent for the same inputs (the day's
input digest makes a second call a no-op: same node, no summariser call, no audit
entry), rebuilt when the day's memories change, emptied and rebuilt by an erasure of a
source (the ``rollups`` store), one build per tree at a time (the tree's lease).

Every door (REST ``POST /api/v1/namespaces/{slug}/end-of-day``, seed 000's
``/cmm/end_of_day``, the MCP tool ``end_of_day``) calls :func:`end_of_day` and formats
its :class:`Digest` with :func:`digest_row` (the drop-in door maps ids to seed 000's
numbers on top).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, Unavailable
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, validate
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import AGENT_ID_RE, authorize, check_writable, resolve_namespace
from apps.timeline import periods
from apps.timeline.build import build
from apps.timeline.models import Grip, Level, RollupNode
from apps.timeline.reading import open_node
from apps.timeline.representation import grip_row, node_row

#: The audit operation of a digest call that built (or removed) something.
OPERATION = "lifecycle.end_of_day"
#: What a caller told "busy" waits before asking again (``Retry-After``). A day's build
#: takes seconds; the build holding the tree may be a whole namespace's.
RETRY_AFTER_SECONDS = 30
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class DigestBusy(Conflict):
    """Another build holds the tree's lease (the scheduled job, ``manage.py rollup``, an
    erasure's rebuild, another digest call): nothing was done; ask again shortly."""

    code = "busy"
    retry_after = RETRY_AFTER_SECONDS


class DayField(serializers.DateField):
    """A day as ``YYYY-MM-DD`` exactly (DRF's DateField also takes ``2024-1-5``)."""

    default_error_messages = {"invalid": "date must be a day as YYYY-MM-DD (UTC)."}

    def to_internal_value(self, value: Any) -> dt.date:
        if isinstance(value, str) and _DAY.fullmatch(value):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:  # 2024-02-30
                pass
        self.fail("invalid")


class EndOfDayInput(StrictSerializer):
    """The body of ``POST /api/v1/namespaces/{slug}/end-of-day`` (and of the MCP tool)."""

    date = DayField(required=False, help_text="The day (UTC) as YYYY-MM-DD; default today "
                    "(UTC). Not after today; years 1 to 9998.")
    agent_id = serializers.RegexField(
        AGENT_ID_RE.pattern, required=False, max_length=128, trim_whitespace=False,
        error_messages={"invalid": "agent_id must be 1-128 characters: letters, digits, '_', "
                        "'.', '@', '-' (starting with a letter or digit)."},
        help_text="That agent's own digest (its memories only, its own timeline); absent: "
        "the whole namespace's.")

    def validate_agent_id(self, value: str) -> str:
        if not AGENT_ID_RE.fullmatch(value):  # the pattern's $ also passes "id\n"
            raise serializers.ValidationError(self.fields["agent_id"].error_messages["invalid"])
        return value


@dataclass(frozen=True)
class Digest:
    """What a digest call found: the day's node (None: the day has no sources) with the
    grips of its live sources, and whether this call built anything."""

    namespace: Namespace
    day: dt.date
    agent_id: str
    node: RollupNode | None
    grips: list[Grip]
    #: This call (re)built the day's segments or node, or removed them (nothing left).
    built: bool
    #: The day is over (before today, UTC): its digest changes only if its memories do.
    complete: bool

    @property
    def empty(self) -> bool:
        """No memory of this tree falls on this day: nothing to summarise."""
        return self.node is None


def today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def parse_body(data: Any) -> dict[str, Any]:
    """A door's JSON body as :func:`end_of_day`'s arguments: ``date`` (a ``date``) and
    ``agent_id``, each only when given; an unknown field or a bad value is a 400 naming it."""
    if not isinstance(data, Mapping):  # JSON null, a list, a number: not a request body
        raise InvalidInput("expected a JSON object.")
    return validate(EndOfDayInput, data)


def _day(value: dt.date | str | None) -> dt.date:
    """The day asked for (default today, UTC), or a 400 naming ``date``."""
    now = today()
    if value is None:
        return now
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        value = validate(EndOfDayInput, {"date": value})["date"]
    if value > now:
        raise InvalidInput(f"date {value.isoformat()} is after today ({now.isoformat()}, UTC): "
                           "a day's digest can be asked for once the day has begun.",
                           field="date")
    if not periods.covered_day(value):
        raise InvalidInput("date must be in the years 1 to 9998 (UTC): the timeline covers "
                           "no other day.", field="date")
    return value


def end_of_day(principal: Principal, slug_or_namespace: str | Namespace | None,
               date: dt.date | str | None = None, agent_id: str | None = "") -> Digest:
    """Build the day's digest now and return it (team admin: ``Action.EDIT``).

    ``date``: the day (a ``date`` or ``"YYYY-MM-DD"``; default today, UTC; not after
    today); ``agent_id``: that agent's own digest (its own timeline), else the whole
    namespace's. Readers and agents get 403, another tenant's namespace is a 404, an
    archived namespace a 409, a tree another build holds a 409 ``busy``
    (:class:`DigestBusy`: retry shortly), a summariser that failed a 503 (the day's
    previous digest is kept). Calling it again with nothing new on that day builds
    nothing: the same node, ``built`` false, no audit entry.
    """
    namespace = (slug_or_namespace if isinstance(slug_or_namespace, Namespace)
                 else resolve_namespace(principal, slug_or_namespace))
    authorize(principal, namespace.pk, Action.EDIT)
    day = _day(date)
    agent_id = ("" if agent_id in (None, "")
                else validate(EndOfDayInput, {"agent_id": agent_id})["agent_id"])
    check_writable(namespace)
    report = build(namespace, agent_id=agent_id, scope={day}, up_to=Level.DAY)
    if report.skipped in ("busy", "lease lost"):
        raise DigestBusy("another build of this timeline is running (the scheduled job, "
                         "manage.py rollup, an erasure's rebuild or another end-of-day "
                         f"call); nothing was done. Retry in {RETRY_AFTER_SECONDS} s.")
    if report.failed:
        failure = report.failed[0]
        raise Unavailable(f"the day's digest could not be built ({failure['level']} "
                          f"{failure['start']}: {failure['error']}); its previous digest, "
                          "if any, is kept. Retry shortly.")
    node = (RollupNode.objects.filter(namespace=namespace, agent_id=agent_id, level=Level.DAY,
                                      start=periods.midnight(day)).values_list("pk", flat=True)
            .first())
    opened = open_node(principal, node) if node is not None else None
    built = bool(report.built) or report.removed > 0
    digest = Digest(namespace, day, agent_id, opened.node if opened else None,
                    opened.grips if opened else [], built, day < today())
    if built:
        _audit(principal, digest, report.built, report.removed)
    return digest


def _audit(principal: Principal, digest: Digest, built: dict[str, int], removed: int) -> None:
    """Who asked, for which day, and what it built (ids and counts, never text); the
    build's own ``timeline.build`` entries, one per node written, are the system's."""
    node = digest.node
    ids = [node.pk, *([node.memory_id] if node.memory_id else [])] if node else []
    with transaction.atomic():
        audit(principal, OPERATION, namespace=digest.namespace, record_ids=ids,
              summary={"date": digest.day.isoformat(), "agent_id": digest.agent_id,
                       "built": dict(built), "removed": removed,
                       "sources": node.source_count if node else 0,
                       "grips": len(digest.grips), "complete": digest.complete})


def digest_row(digest: Digest) -> dict[str, Any]:
    """The digest as REST and MCP answer it: the day node as ``GET /api/v1/timeline/{id}``
    shows it (None for an empty day) and its grips."""
    return {
        "namespace": digest.namespace.slug, "date": digest.day.isoformat(),
        "agent_id": digest.agent_id, "built": digest.built, "complete": digest.complete,
        "empty": digest.empty, "node": node_row(digest.node) if digest.node else None,
        "grips": [grip_row(grip) for grip in digest.grips],
    }
