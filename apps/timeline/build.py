"""Building a timeline: segment → day → week → month → year, with checkpoints.

Inputs are the tree's live memories (the namespace's, or one agent's) by event time
(``occurred_at``, else ``created_at``), summaries left out. A day is rebuilt only when
the digest of its memories (id, version, time, session) differs from the one its node was
built from; within it, only the segments whose memories changed are summarised again.
Weeks and months are summarised from their days, years from their months, each rebuilt
only when a child's summary changed. Each node is written in its own transaction through
the write path (its summary memory replaced, its grips and sources rewritten, audited,
announced): a summariser that fails leaves that node as it was, its ancestors wait, and
the next build picks them up, because their digests still differ.

A build re-checks in its node's transaction that what it read is still there (the
memories, at the versions read; the children, at the revisions read): an erasure or edit
that landed meanwhile makes it skip that node until the next build, so a summary never
outlives what it was made from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core.kinds import MemoryKind
from apps.core.roles import Role
from apps.core.summarizer import PART_SEPARATOR, SourceText, Summarizer, SummarizerError, Summary
from apps.memories import indexing, writes
from apps.memories.models import Memory, content_hash
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.timeline import changes, conf, grips, periods
from apps.timeline.models import Grip, Level, NodeStatus, RollupNode, RollupSource, RollupState
from apps.timeline.representation import node_event

#: Who writes rollups (audit entries, the summary memories' events).
ACTOR = Principal(label="system:timeline", agent_id="system:timeline", role=Role.SYSTEM)
#: The agent id of the whole namespace's summary memories (no key can have it: keys'
#: agent ids have no colon). An agent's own timeline's summaries carry that agent's id.
SUMMARY_AGENT = "system:timeline"
#: A build whose lease was not renewed for this long is presumed dead. A running build
#: renews it after every node it writes or skips (``Heartbeat``), so a long build — a day
#: of many segments with a slow provider — keeps it however long it runs.
LEASE_TIMEOUT = dt.timedelta(hours=2)
#: ``progress(done, total)``: days looked at so far, of the days this build looks at.
Progress = Callable[[int, int], None]
#: Renews the build's lease; False when it was lost (presumed dead and taken over).
Heartbeat = Callable[[], bool]
#: The levels summarised from the days, bottom up (``up_to`` stops among them).
UPPER_LEVELS = (Level.WEEK, Level.MONTH, Level.YEAR)
_CHUNK = 500


@dataclass
class BuildReport:
    namespace: str
    agent_id: str = ""
    built: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    removed: int = 0
    #: Nodes not written this time: {"level", "start", "error", "retryable"}.
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: Ancestors not rebuilt because a child failed (they are rebuilt when it succeeds).
    waiting: int = 0
    #: Why nothing ran ("busy": another build holds the tree; "archived").
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def fail(self, level: str, start: dt.datetime, error: str, retryable: bool) -> None:
        self.failed.append({"level": level, "start": start.isoformat(), "error": error[:500],
                            "retryable": retryable})

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "agent_id": self.agent_id, "built": dict(self.built),
                "unchanged": self.unchanged, "removed": self.removed, "waiting": self.waiting,
                "failed": self.failed[:50], "skipped": self.skipped}


class _Stale(Exception):
    """What a node was built from changed before it could be written."""


def build(namespace: Namespace, *, agent_id: str = "", rebuild: bool = False,
          progress: Progress | None = None, summarizer: Summarizer | None = None,
          scope: Collection[dt.date] | None = None, up_to: str = Level.YEAR) -> BuildReport:
    """Bring one timeline up to date (``agent_id`` "": the whole namespace's); with
    ``rebuild``, every node is summarised again. One build per tree at a time: a second
    one finds the lease held and returns a report that says so (``skipped``).

    ``scope``: only these days (UTC) are looked at — their memories alone are listed,
    and nodes waiting for a rebuild elsewhere are left to the next full build.
    ``up_to``: the highest level built; ``Level.DAY`` builds the days and their segments
    but not the weeks, months and years above them (the next full build brings those up
    to date: their digests of the days' texts differ). The end-of-day digest
    (apps/lifecycle/digest.py) builds one day this way, so a call costs one day's work.
    Only a full build (no scope, up to the year) is recorded as the tree's last build,
    which the scheduled job times its next one from."""
    if up_to not in UPPER_LEVELS and up_to != Level.DAY:
        raise ValueError(f"up_to must be day, week, month or year, not {up_to!r}")
    report = BuildReport(namespace.slug, agent_id)
    if namespace.archived_at is not None:
        report.skipped = "archived"
        return report
    token = take_lease(namespace, agent_id)
    if token is None:
        report.skipped = "busy"
        return report
    try:
        if summarizer is None:
            from apps.core.summarizer import get_summarizer

            summarizer = get_summarizer()
        Builder(namespace, agent_id, summarizer, report, rebuild=rebuild, progress=progress,
                scope=scope, strict=scope is not None, up_to=up_to,
                heartbeat=lambda: renew_lease(namespace, agent_id, token)).run()
    finally:
        full = scope is None and up_to == Level.YEAR
        release_lease(namespace, agent_id, token, report if full else None)
    return report


def renew_lease(namespace: Namespace, agent_id: str, token: str) -> bool:
    """The build holding ``token`` is alive: its lease runs from now. False if it no
    longer holds it (it was presumed dead and another build took the tree)."""
    now = timezone.now()
    return bool(RollupState.objects.filter(namespace=namespace, agent_id=agent_id, lease=token)
                .update(running_since=now, updated_at=now))


def release_lease(namespace: Namespace, agent_id: str, token: str,
                  report: BuildReport | None = None) -> None:
    """The build is over: the tree is free; a full build records its report."""
    now = timezone.now()
    fields: dict[str, Any] = {"running_since": None, "lease": "", "updated_at": now}
    if report is not None:
        fields.update(last_finished_at=now, last_result=report.as_dict())
    RollupState.objects.filter(namespace=namespace, agent_id=agent_id, lease=token).update(**fields)


def take_lease(namespace: Namespace, agent_id: str) -> str | None:
    """The tree's lease (its token), or None while another build holds it."""
    now, token = timezone.now(), uuid.uuid4().hex
    RollupState.objects.get_or_create(namespace=namespace, agent_id=agent_id)
    taken = RollupState.objects.filter(namespace=namespace, agent_id=agent_id).filter(
        Q(running_since__isnull=True) | Q(running_since__lt=now - LEASE_TIMEOUT)).update(
        running_since=now, lease=token, last_started_at=now, updated_at=now)
    return token if taken else None


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, separators=(",", ":")).encode()).hexdigest()


def _text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Builder:
    """One run over one tree. ``exclude``: memory ids treated as gone (an erasure rebuilds
    inside its transaction, before the rows are deleted); ``scope``: only these days and
    the periods holding them (and nodes waiting for a rebuild, unless ``strict``: then
    the scope's days alone, and only their memories are listed); ``up_to``: the highest
    level built (``Level.DAY``: no week, month or year); ``interim``: the nodes
    written are marked for the next build to summarise again (an erasure's offline
    rebuild while another summariser is configured); ``heartbeat``: renews the caller's
    lease after each day and each higher node (the run stops when it was lost)."""

    def __init__(self, namespace: Namespace, agent_id: str, summarizer: Summarizer,
                 report: BuildReport, *, rebuild: bool = False, exclude: Collection[str] = (),
                 scope: Collection[dt.date] | None = None, progress: Progress | None = None,
                 interim: bool = False, heartbeat: Heartbeat | None = None,
                 strict: bool = False, up_to: str = Level.YEAR) -> None:
        self.heartbeat = heartbeat or (lambda: True)
        self._last_beat: tuple[int, int, int] = (0, 0, 0)
        self.namespace, self.agent_id, self.summarizer = namespace, agent_id, summarizer
        self.report, self.rebuild, self.interim = report, rebuild, interim
        self.exclude = {str(i) for i in exclude}
        self.scope = None if scope is None else set(scope)
        self.strict = strict and self.scope is not None
        self.upper = UPPER_LEVELS[:UPPER_LEVELS.index(up_to) + 1] if up_to in UPPER_LEVELS else ()
        self.progress = progress or (lambda done, total: None)
        self.gap = conf.segment_gap_minutes()
        self.failed: dict[str, set[dt.datetime]] = defaultdict(set)

    def nodes(self, level: str, **filters: Any):
        return RollupNode.objects.filter(namespace=self.namespace, agent_id=self.agent_id,
                                         level=level, **filters)

    # --- the run --------------------------------------------------------------------------

    def run(self) -> BuildReport:
        by_day: dict[dt.date, list[periods.Row]] = defaultdict(list)
        for row in self._inputs():
            by_day[periods.day_of(row.at)].append(row)
        existing = {node.start.date(): node for node in self.nodes(Level.DAY)}
        waiting = {node.start.date() for node in existing.values() if node.status == NodeStatus.PENDING}
        waiting |= {periods.day_of(start) for start in self.nodes(
            Level.SEGMENT, status=NodeStatus.PENDING).values_list("start", flat=True)}
        days = set(by_day) | set(existing) | waiting
        if self.scope is not None:
            days &= self.scope if self.strict else self.scope | waiting
        for done, day in enumerate(sorted(days), start=1):
            if by_day.get(day):
                self._day(day, by_day[day], existing.get(day))
            else:
                self._remove_day(day, existing.get(day))
            if not self._alive():
                return self.report
            self.progress(done, len(days))
        for level in self.upper:
            if not self._upper(level, days):
                return self.report
        self._link()
        return self.report

    def _alive(self) -> bool:
        """Renew the lease after work was done (a node written, removed or failed: an
        unchanged day costs no summariser call and no renewal); a build that lost it
        (presumed dead, taken over) stops: the other build owns the tree now."""
        work = (sum(self.report.built.values()), self.report.removed, len(self.report.failed))
        if work == self._last_beat:
            return True
        self._last_beat = work
        if self.heartbeat():
            return True
        self.report.skipped = "lease lost"
        return False

    def _inputs(self) -> list[periods.Row]:
        # Event times past the covered years (9999) are left out: their week, month or year
        # would end past the calendar (periods.LIMIT).
        queryset = (Memory.objects.live().filter(namespace=self.namespace)
                    .exclude(kind=MemoryKind.SUMMARY)
                    .annotate(at=Coalesce("occurred_at", "created_at"))
                    .filter(at__gte=periods.FIRST, at__lt=periods.LIMIT)
                    .order_by("at", "created_at", "pk"))
        if self.agent_id:
            queryset = queryset.filter(agent_id=self.agent_id)
        if self.strict:  # the scope's days only: a one-day build lists one day
            covered = [day for day in self.scope if periods.covered_day(day)]
            if not covered:
                return []
            queryset = queryset.filter(at__gte=periods.midnight(min(covered)),
                                       at__lt=periods.bounds(Level.DAY, max(covered))[1])
        return [periods.Row(pk, version, at, session)
                for pk, version, at, session in queryset.values_list(
                    "pk", "version", "at", "session_id").iterator(chunk_size=5000)
                if str(pk) not in self.exclude and periods.covered(at)]

    def _needs(self, node: RollupNode | None, wanted: str) -> bool:
        if node is None:
            return True
        if node.status == NodeStatus.ERASED:  # stays empty while its inputs are the same
            return node.input_digest != wanted
        if self.rebuild or node.status == NodeStatus.PENDING or node.input_digest != wanted:
            return True
        return bool(node.summary) and node.memory_id is None  # its memory was deleted

    # --- days and segments ----------------------------------------------------------------

    def _day(self, day: dt.date, rows: list[periods.Row], node: RollupNode | None) -> None:
        start, end = periods.bounds(Level.DAY, day)
        wanted = digest("day", self.gap, conf.SEGMENT_MAX_SOURCES,
                        [(str(r.id), r.version, r.at.isoformat(), r.session_id) for r in rows])
        pending = self.nodes(Level.SEGMENT, start__gte=start, start__lt=end,
                             status=NodeStatus.PENDING).exists()
        if not self._needs(node, wanted) and not pending:
            self.report.unchanged += 1
            return
        if not self._segments(start, end, rows):
            self.failed[Level.DAY].add(start)
            self.report.waiting += 1
            return
        children = list(self.nodes(Level.SEGMENT, start__gte=start, start__lt=end)
                        .order_by("start", "session_id"))
        self._summarise_children(Level.DAY, start, end, node, children, wanted)

    def _segments(self, start: dt.datetime, end: dt.datetime, rows: list[periods.Row]) -> bool:
        existing = {(n.session_id, n.start): n for n in self.nodes(
            Level.SEGMENT, start__gte=start, start__lt=end)}
        contents: dict[str, Memory] | None = None
        ok = True
        for group in periods.segments(rows, self.gap, conf.SEGMENT_MAX_SOURCES):
            node = existing.pop((group[0].session_id, group[0].at), None)
            wanted = digest("segment", [(str(r.id), r.version, r.at.isoformat()) for r in group])
            if not self._needs(node, wanted):
                self.report.unchanged += 1
                continue
            if contents is None:
                contents = self._contents(rows)
            if any(str(r.id) not in contents for r in group):  # deleted since it was listed
                self.report.fail(Level.SEGMENT, group[0].at,
                                 "changed during the build: a source memory", True)
                ok = False
                continue
            sources = [SourceText(str(r.id), contents[str(r.id)].content, r.at,
                                  _label(contents[str(r.id)])) for r in group]
            ok &= self._write(Level.SEGMENT, group[0].at, group[-1].at, group[0].session_id,
                              node, sources, wanted, len(group), rows=group)
        for leftover in existing.values():
            self._remove(leftover)
        return ok

    def _contents(self, rows: Sequence[periods.Row]) -> dict[str, Memory]:
        found: dict[str, Memory] = {}
        ids = [r.id for r in rows]
        for start in range(0, len(ids), _CHUNK):
            for memory in Memory.objects.filter(pk__in=ids[start:start + _CHUNK]):
                found[str(memory.pk)] = memory
        return found

    def _remove_day(self, day: dt.date, node: RollupNode | None) -> None:
        start, end = periods.bounds(Level.DAY, day)
        for segment in self.nodes(Level.SEGMENT, start__gte=start, start__lt=end):
            self._remove(segment)
        if node is not None:
            self._remove(node)

    # --- weeks, months, years -------------------------------------------------------------

    def _upper(self, level: str, days: set[dt.date]) -> bool:
        """Weeks and months from their days, years from their months. False: the lease
        was lost (the run stops)."""
        child_level = Level.MONTH if level == Level.YEAR else Level.DAY
        groups: dict[dt.datetime, list[RollupNode]] = defaultdict(list)
        for child in self.nodes(child_level).order_by("start"):
            groups[periods.start_of(level, child.start.date())].append(child)
        existing = {node.start: node for node in self.nodes(level)}
        starts = set(groups) | set(existing)
        if self.scope is not None:
            starts &= ({periods.start_of(level, day) for day in days}
                       | {s for s, n in existing.items() if n.status == NodeStatus.PENDING})
        # A child that failed this run (even one never built) holds its periods back.
        held_back = {periods.start_of(level, failed.date()) for failed in self.failed[child_level]}
        for start in sorted(starts):
            children = groups.get(start)
            if start in held_back:
                self.failed[level].add(start)
                self.report.waiting += 1
                continue
            if not children:
                self._remove(existing[start])
                continue
            wanted = digest(level, [(c.start.isoformat(), c.status, _text_sha(c.summary))
                                    for c in children])
            node = existing.get(start)
            if not self._needs(node, wanted):
                self.report.unchanged += 1
                continue
            end = periods.bounds(level, start.date())[1]
            self._summarise_children(level, start, end, node, children, wanted)
            if not self._alive():
                return False
        return True

    def _summarise_children(self, level: str, start: dt.datetime, end: dt.datetime,
                            node: RollupNode | None, children: list[RollupNode],
                            wanted: str) -> bool:
        usable = [c for c in children if c.status != NodeStatus.ERASED and c.summary.strip()]
        held: dict[str, list[grips.GripSpec]] = defaultdict(list)
        # The node with each grip: an encrypted namespace's excerpt opens under its namespace.
        for grip in Grip.objects.filter(node__in=usable).select_related("node").order_by(
                "node", "position"):
            held[str(grip.node_id)].append(grips.GripSpec(grip.part, str(grip.memory_id),
                                                          grip.excerpt))
        kids = {str(c.pk): grips.ChildGrips(c.parts or [], held[str(c.pk)]) for c in usable}
        sources = [SourceText(str(c.pk), c.summary, c.start,
                              periods.title(c.level, c.start, c.end, c.session_id)) for c in usable]
        ok = self._write(level, start, end, "", node, sources, wanted,
                         sum(c.source_count for c in children), children=usable, kids=kids)
        if not ok:
            self.failed[level].add(start)
        return ok

    # --- writing one node -----------------------------------------------------------------

    def _write(self, level: str, start: dt.datetime, end: dt.datetime, session_id: str,
               node: RollupNode | None, sources: list[SourceText], wanted: str,
               source_count: int, *, rows: Sequence[periods.Row] = (),
               children: Sequence[RollupNode] = (),
               kids: dict[str, grips.ChildGrips] | None = None) -> bool:
        try:
            summary = (self.summarizer.summarize(sources, max_chars=conf.max_chars(level))
                       if sources else Summary(parts=()))
        except SummarizerError as exc:
            self.report.fail(level, start, str(exc), exc.retryable)
            return False
        parts = grips.evidence(summary, {s.id: s.text for s in sources})
        found = grips.memory_grips(parts) if level == Level.SEGMENT else grips.child_grips(parts, kids or {})
        texts = [text for text, _ in parts]
        text = PART_SEPARATOR.join(texts)
        header = periods.title(level, start, end, session_id, self.agent_id)
        content = f"{header}, {source_count} sources:\n{text}" if text else ""
        embeddings = indexing.embed_contents([content]) if content else None
        name = summary.summarizer or getattr(self.summarizer, "name", "")
        try:
            with writes.atomic() as write:
                self._check_fresh(node, rows, children)
                node = self._store(write, level, start, end, session_id, node, content, embeddings,
                                   texts, name, found, wanted, source_count, rows)
        except _Stale as exc:
            self.report.fail(level, start, f"changed during the build: {exc}", True)
            return False
        except IntegrityError:  # another build wrote this period meanwhile
            self.report.fail(level, start, "changed during the build: written by another build",
                             True)
            return False
        self.report.built[str(level)] = self.report.built.get(str(level), 0) + 1
        return True

    def _check_fresh(self, node: RollupNode | None, rows: Sequence[periods.Row],
                     children: Sequence[RollupNode]) -> None:
        if node is not None:
            now = RollupNode.objects.select_for_update().filter(pk=node.pk).values_list(
                "revision", flat=True).first()
            if now != node.revision:
                raise _Stale("the node itself")
        if rows:
            versions = {str(pk): version for pk, version in Memory.objects.filter(
                pk__in=[r.id for r in rows]).values_list("pk", "version")}
            if any(versions.get(str(r.id)) != r.version for r in rows):
                raise _Stale("a source memory")
        if children:
            revisions = dict(RollupNode.objects.select_for_update().filter(
                pk__in=[c.pk for c in children]).values_list("pk", "revision"))
            if any(revisions.get(c.pk) != c.revision for c in children):
                raise _Stale("a child node")

    def _store(self, write: writes.Write, level: str, start: dt.datetime, end: dt.datetime,
               session_id: str, node: RollupNode | None, content: str, embeddings: Any,
               texts: list[str], name: str, found: list[grips.GripSpec], wanted: str,
               source_count: int, rows: Sequence[periods.Row]) -> RollupNode:
        change = "updated" if node is not None else "created"
        if node is None:
            node = RollupNode(namespace=self.namespace, agent_id=self.agent_id, level=level,
                              start=start, session_id=session_id)
        old = node.memory_id
        # The hash as stored: keyed, or plain when erased before encrypt_namespace (the
        # text is gone, so the sweep cannot key it).
        blocked = (node.status == NodeStatus.ERASED and content
                   and node.erased_content_sha256 in (content_hash(content, self.namespace),
                                                      content_hash(content, None)))
        if blocked:  # the very text an erasure removed: the node stays empty
            content, texts, found = "", [], []
        if old and str(old) not in self.exclude:
            write.delete(self.namespace, [old], actor=ACTOR, audit=_recorded_below, secure=True)
        memory = None
        if content:
            now = timezone.now()
            memory = Memory(
                id=uuid.uuid4(), namespace=self.namespace, content=content,
                content_hash=content_hash(content, self.namespace), kind=MemoryKind.SUMMARY,
                agent_id=self.agent_id or SUMMARY_AGENT, occurred_at=start,
                tags=["timeline", level], created_at=now, updated_at=now,
                metadata={"timeline_node": str(node.pk), "level": level,
                          "period_start": start.isoformat(), "period_end": end.isoformat(),
                          **({"session_id": session_id} if session_id else {})})
            write.create(self.namespace, [memory], embeddings, actor=ACTOR, audit=_recorded_below)
        node.end, node.summary, node.parts = end, PART_SEPARATOR.join(texts), texts
        node.summarizer, node.source_count, node.input_digest = name, source_count, wanted
        node.built_at, node.revision, node.memory = timezone.now(), node.revision + 1, memory
        node.status = (NodeStatus.ERASED if blocked else
                       NodeStatus.PENDING if self.interim else NodeStatus.OK)
        node.save()
        Grip.objects.filter(node=node).delete()
        alive = {str(pk) for pk in Memory.objects.filter(
            pk__in={g.memory_id for g in found}).values_list("pk", flat=True)}
        Grip.objects.bulk_create([
            Grip(node=node, part=g.part, position=i, memory_id=g.memory_id, excerpt=g.excerpt)
            for i, g in enumerate(g for g in found if g.memory_id in alive)])
        if level == Level.SEGMENT:
            RollupSource.objects.filter(node=node).delete()
            RollupSource.objects.bulk_create([RollupSource(node=node, memory_id=r.id) for r in rows])
        audit(ACTOR, "timeline.build", namespace=self.namespace,
              record_ids=[node.pk, *([memory.pk] if memory else []), *([old] if old else [])],
              summary={"level": level, "start": start.isoformat(), "agent_id": self.agent_id,
                       "sources": source_count, "parts": len(texts), "grips": len(found),
                       "summarizer": name, "replaced_memory": str(old) if old else None})
        changes.announce(change, self.namespace, node_event(node), ACTOR)
        return node

    def _remove(self, node: RollupNode) -> None:
        """A period with nothing left in it: the node, its grips and its summary memory go."""
        with writes.atomic() as write:
            if not RollupNode.objects.select_for_update().filter(pk=node.pk).exists():
                return
            memory = node.memory_id
            if memory and str(memory) not in self.exclude:
                write.delete(self.namespace, [memory], actor=ACTOR, audit=_recorded_below,
                             secure=True)
            audit(ACTOR, "timeline.remove", namespace=self.namespace,
                  record_ids=[node.pk, *([memory] if memory else [])],
                  summary={"level": node.level, "start": node.start.isoformat(),
                           "agent_id": self.agent_id})
            event = node_event(node)
            RollupNode.objects.filter(pk=node.pk).delete()
            changes.announce("removed", self.namespace, event, ACTOR)
        self.report.removed += 1

    # --- the tree -------------------------------------------------------------------------

    def _link(self) -> None:
        """Parents, for drilling down: year → month → week → day → segment. A week hangs
        under the month of its Thursday (periods.week_parent_month)."""
        tree = {level: {n.start: n for n in self.nodes(level).only("id", "start", "parent")}
                for level in
                (Level.DAY, Level.WEEK, Level.MONTH, Level.YEAR)}
        months = set(tree[Level.MONTH])
        days_of_week: dict[dt.datetime, list[dt.date]] = defaultdict(list)
        for start in tree[Level.DAY]:
            days_of_week[periods.start_of(Level.WEEK, start.date())].append(start.date())
        changed: list[RollupNode] = []

        def point(node: RollupNode, parent: RollupNode | None) -> None:
            wanted = parent.pk if parent else None
            if node.parent_id != wanted:
                node.parent_id = wanted
                changed.append(node)

        for segment in self.nodes(Level.SEGMENT).only("id", "start", "parent"):
            point(segment, tree[Level.DAY].get(periods.midnight(segment.start.date())))
        for start, day in tree[Level.DAY].items():
            point(day, tree[Level.WEEK].get(periods.start_of(Level.WEEK, start.date())))
        for start, week in tree[Level.WEEK].items():
            month = periods.week_parent_month(start, months, days_of_week.get(start, []))
            point(week, tree[Level.MONTH].get(month) if month else None)
        for start, month in tree[Level.MONTH].items():
            point(month, tree[Level.YEAR].get(periods.start_of(Level.YEAR, start.date())))
        RollupNode.objects.bulk_update(changed, ["parent"], batch_size=_CHUNK)


def _recorded_below(*args: Any) -> None:
    """The write path's audit hook for a summary memory written or replaced with its node:
    the node's own entry (``timeline.build`` / ``timeline.remove``) names it."""


def _label(memory: Memory) -> str:
    """Who said it, for a summariser that shows it: an event's role, else the agent."""
    return str(getattr(memory, "role", "") or memory.agent_id or "")
