"""Consolidation: merge the memories of a namespace that say the same thing, with lineage,
reversibly (docs/lifecycle.md).

``consolidate`` finds groups (apps/lifecycle/grouping.py) among the namespace's current
memories (optionally narrowed by agent, kind, tags, time) and, on a dry run, returns them
as proposals with their similarities. Applied, each group keeps its best member (the
*survivor*, whose text is the proposal's ``merged_content``) and the others are marked
superseded by it through the write path (``Write.supersede``: a ``derived_from`` link each;
they leave default lists and recall, and stay readable by id and with
``include_superseded``). The survivor takes the union of its group's tags, as a versioned
edit (``Write.update``) marked ``"by": "merge"`` in its version, so a tag-filtered recall
that found a member finds the survivor; a tag named by one of the namespace's live
tag-scoped sharing grants is never gained (:func:`guarded_tags`: that would show the
survivor to another namespace), so members differing in one merge only when nested, as
before. Pairs alike but for a number, a name, a date or a negation are linked
``conflicts_with`` instead and both stay. ``unmerge`` undoes a merge, the survivor's gained
tags included (unless it was edited since). Every apply and unmerge is audited; nothing is
deleted. A certified erasure of a member takes back what it gave the survivor: the tags
only it brought, and a merged text a person gave at the merge (marked ``merge_text``)
(apps/memories/merge_marks.py, docs/lifecycle.md "Erasure of a merged member").

Conversation events and timeline summaries are never consolidated: events are the record of
what was said (append-only), summaries are rebuilt by the timeline.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, ServiceError, Unavailable
from apps.core.kinds import MemoryKind
from apps.core.roles import Action
from apps.core.validation import (
    StrictBooleanField,
    StrictSerializer,
    TagsField,
    TextField,
    UTCDateTimeField,
    validate,
)
from apps.lifecycle import grouping, kept_apart, merged_text
from apps.memories import merge_marks, plain_vectors, schemas, services, writes
from apps.memories.embeddings import get_embedder
from apps.memories.models import Memory
from apps.memories.subjects import SUBJECT_KEY
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, check_writable, resolve_namespace

#: Kinds consolidation leaves alone (events: the record of what was said; summaries: the
#: timeline's, rebuilt by it).
NEVER = (MemoryKind.EVENT, MemoryKind.SUMMARY)
#: Vectors read from the index per request.
CHUNK = 1000
#: Conflict links written per transaction (and audited per entry).
CONFLICT_CHUNK = 2000
MEMBER, SUMMARY, MERGED_TEXTS = merged_text.MEMBER, merged_text.SUMMARY, merged_text.CHOICES
#: The mark in a tags edit's version (``changes["tags"]["by"]``) that consolidation made
#: it: unmerge reverts only edits so marked, and only while nothing else edited since
#: (apps/memories/merge_marks.py; ``merge_text``: a text given at a merge).
MERGE, UNMERGE, MERGE_TEXT = merge_marks.MERGE, merge_marks.UNMERGE, merge_marks.MERGE_TEXT


class ConsolidateFilters(StrictSerializer):
    agent_id = TextField(max_length=128, required=False)
    kind = serializers.ChoiceField(
        choices=[k for k in MemoryKind.choices if k[0] not in NEVER], required=False)
    tags = TagsField(required=False, help_text="Only memories with every one of these tags.")
    created_after = UTCDateTimeField(required=False)
    created_before = UTCDateTimeField(required=False)

    def validate(self, attrs):
        low, high = attrs.get("created_after"), attrs.get("created_before")
        if low and high and high <= low:
            raise serializers.ValidationError({"created_before": "must be after created_after."})
        return attrs


class ConsolidateInput(StrictSerializer):
    dry_run = StrictBooleanField(
        required=False, help_text="Only propose (the default on /api/v1; the seeds' routes "
        "apply unless told otherwise).")
    threshold = serializers.FloatField(
        required=False, min_value=0.5, max_value=1.0,
        help_text="Cosine similarity of the contents at which two memories say the same "
        "thing (default MEMORYWEB_CONSOLIDATE_THRESHOLD).")
    filters = ConsolidateFilters(required=False)
    merged_text = serializers.ChoiceField(
        choices=MERGED_TEXTS, required=False,
        help_text="What a merged memory says: `member`, the survivor's own text (nothing "
        "new is written); `summary`, the summarizer's text of the group's members "
        "(MEMORYWEB_SUMMARIZER, offline extractive by default), written as a versioned edit "
        "of the survivor that erasing any member reverts. Default: the namespace's "
        "`consolidation.merged_text`, else `member`.")


@dataclass
class Outcome:
    """What a consolidation found (and, unless a dry run, did)."""

    namespace: Namespace
    dry_run: bool
    threshold: float
    candidates: int
    pairs_checked: int
    groups: list[grouping.Group]
    conflicts: list[grouping.Conflict]
    contents: dict[str, str]
    #: Applied: groups merged, memories superseded, groups left (changed meanwhile),
    #: conflict links written.
    merged: int = 0
    superseded: int = 0
    stale: int = 0
    conflicts_linked: int = 0
    applied: list[bool] = field(default_factory=list)
    #: Each candidate's version when it was read: a member edited since is not merged.
    versions: dict[str, int] = field(default_factory=dict)
    #: merge() with a merged text: whether the survivor now says it, or why not.
    rewritten: bool = False
    rewrite_error: str = ""
    #: ``merged_text``: ``member`` or ``summary``; with ``summary``, each survivor's merged
    #: text where it differs from its own (:func:`merged_texts`) and who wrote them.
    merged_text: str = MEMBER
    merged_texts: dict[str, str] = field(default_factory=dict)
    summarizer: str = ""

    def merged_content(self, group: grouping.Group) -> str:
        """What the group's merged memory says (or would say, on a dry run)."""
        return self.merged_texts.get(group.survivor, self.contents[group.survivor])


@dataclass(frozen=True)
class Request:
    """A consolidation asked for and allowed: its namespace and validated body."""

    namespace: Namespace
    cleaned: dict[str, Any]
    dry_run: bool

    def candidates(self) -> QuerySet[Memory]:
        """The memories it would consider (counted by the REST door: now or as a job)."""
        return _candidates(self.namespace, self.cleaned.get("filters") or {})


def prepare(principal: Principal, namespace: str | None, data: Any, *,
            dry_run_default: bool = True) -> Request:
    """Everything a consolidation may be refused for, before any work: the body, the
    namespace, the role (team admin), an archived namespace for an applied one."""
    if not isinstance(data, Mapping):  # JSON null, a list, a number: no request body
        raise InvalidInput("expected a JSON object.")
    cleaned = validate(ConsolidateInput, data)
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.EDIT)
    dry_run = cleaned.get("dry_run", dry_run_default)
    if not dry_run:
        check_writable(ns)
    return Request(ns, cleaned, dry_run)


def consolidate(principal: Principal, namespace: str | None, data: Mapping[str, Any], *,
                dry_run_default: bool = True, limit: int | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> Outcome:
    """Find (and unless ``dry_run``, apply) merges in a namespace (team admin).

    ``limit``: the most candidates a call may consider (the REST doors pass
    MEMORYWEB_CONSOLIDATE_MAX; ``manage.py consolidate`` none). ``progress(stage, done,
    total)``: for a progress bar.
    """
    return run(principal, prepare(principal, namespace, data, dry_run_default=dry_run_default),
               limit=limit, progress=progress)


def run(principal: Principal, request: Request, *, limit: int | None = None,
        progress: Callable[[str, int, int], None] | None = None) -> Outcome:
    """A prepared consolidation (:func:`prepare`) carried out."""
    ns, cleaned, dry_run = request.namespace, request.cleaned, request.dry_run
    threshold = cleaned.get("threshold", settings.MEMORYWEB_CONSOLIDATE_THRESHOLD)
    selected = request.candidates()
    if limit is not None and (count := selected.count()) > limit:
        raise InvalidInput(f"{count} memories match; a request consolidates at most "
                           f"{limit} (MEMORYWEB_CONSOLIDATE_MAX): narrow it with filters, or "
                           "run manage.py consolidate.", field="filters")
    columns = ("pk", "content", "kind", "agent_id", "metadata", "tags", "valid_from",
               "valid_until", "importance", "confidence", "access_count", "created_at",
               "version", "context_memory_id", "content_hash")
    # Through instances, not values_list: an encrypted namespace's content and metadata
    # are opened by their fields (apps/memories/sealing.py).
    rows = [tuple(getattr(memory, name) for name in columns) for memory in
            selected.only(*columns[1:], "namespace_id").iterator(chunk_size=2000)]
    candidates = [grouping.Candidate(str(row[0]), row[1], partition(*row[2:5], *row[6:8]),
                                     (row[8], row[9], row[10], row[11].timestamp()),
                                     frozenset(row[5] or ()))
                  for row in rows]
    with_context = {str(row[0]): row[14] for row in rows if row[13] is not None}
    vectors = _content_vectors(ns, candidates, with_context, progress)

    def neighbour_progress(n: int) -> None:
        if progress:
            progress("neighbours", n, len(candidates))

    # The neighbours among these content vectors, searched in process (grouping.py and
    # neighbours.py say why not the index, whose vectors may mix in a previous turn).
    found = grouping.find_groups(candidates, vectors, None, threshold, term_similarity,
                                 neighbour_progress, guarded=guarded_tags(ns),
                                 max_tags=settings.MEMORYWEB_LIMITS["max_tags"],
                                 apart=kept_apart.pairs_in(ns))
    ordered = {str(row[0]): row[5] or [] for row in rows}
    for group in found.groups:  # the survivor's own tags in their stored order
        group.tags = tuple(grouping.merged_tags(ordered[group.survivor],
                                                (ordered[m] for m in group.members)))
    outcome = Outcome(ns, dry_run, threshold, found.candidates, found.pairs_checked,
                      found.groups, found.conflicts, {c.id: c.content for c in candidates},
                      versions={str(row[0]): row[12] for row in rows},
                      merged_text=merged_text.asked(ns, cleaned))
    if outcome.merged_text == SUMMARY:  # every text written before anything is merged
        outcome.summarizer, outcome.merged_texts = merged_text.summaries(
            [(g.survivor, g.members) for g in outcome.groups], outcome.contents, progress)
    if not dry_run:
        _apply(principal, outcome, progress)
    return outcome


def partition(kind: str, agent_id: str, metadata: Any, valid_from: Any,
              valid_until: Any) -> tuple[Any, ...]:
    """What two memories must share to be merged: kind, agent, GDPR subject and validity
    window (the survivor must be valid whenever a member was). Tags may differ: the
    survivor takes their union (grouping.tags_may_merge, :func:`guarded_tags`)."""
    return (kind, agent_id, (metadata or {}).get(SUBJECT_KEY), valid_from, valid_until)


def guarded_tags(ns: Namespace) -> frozenset[str]:
    """Tags a survivor may not gain: those of the namespace's live tag-scoped sharing
    grants. Such a grant shares a memory holding any of its tags, so a survivor gaining
    one would become visible to the grantee when it was not: a merge may then differ in
    it only when the survivor already holds it (nested tags). Every live grant counts,
    whatever its kinds or window (cautious; a grant named nothing else is rare)."""
    return frozenset(tag for tags in SharingGrant.objects.live().filter(grantor=ns)
                     .values_list("tags", flat=True) for tag in tags or ())


def term_similarity(pairs: list[tuple[str, str]]) -> list[float]:
    """The model's cosine of each pair of words (one batch for all of them)."""
    if not pairs:
        return []
    words = sorted({word for pair in pairs for word in pair})
    try:
        vectors = dict(zip(words, get_embedder().embed(words), strict=True))
    except Exception as exc:
        raise Unavailable("the embedding model failed; retry shortly.") from exc
    return [float(np.dot(vectors[a], vectors[b])) for a, b in pairs]


def _candidates(ns: Namespace, filters: Mapping[str, Any]) -> QuerySet[Memory]:
    """The namespace's current, live memories that may be merged, narrowed by ``filters``."""
    queryset = (Memory.objects.live().current().filter(namespace=ns, event_type="")
                .exclude(kind__in=NEVER))
    for name in ("agent_id", "kind"):
        if filters.get(name):
            queryset = queryset.filter(**{name: filters[name]})
    for tag in filters.get("tags") or []:
        queryset = queryset.filter(tag_rows__tag=tag)
    if filters.get("created_after"):
        queryset = queryset.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        queryset = queryset.filter(created_at__lt=filters["created_before"])
    return queryset.order_by("created_at", "pk")


def _content_vectors(ns: Namespace, candidates: list[grouping.Candidate],
                     with_context: Mapping[str, str],
                     progress: Callable[[str, int, int], None] | None) -> np.ndarray:
    """Unit vectors of the candidates' contents alone: the index's vector where it is the
    content's; for one indexed with its session's previous turn (``with_context``: id ->
    content hash), its kept plain vector (apps/memories/plain_vectors.py); else embedded
    now, and kept for the next run."""
    store = get_vector_store()
    vectors = np.zeros((len(candidates), get_embedder().dimension), dtype=np.float32)
    missing: list[int] = []
    for start in range(0, len(candidates), CHUNK):
        part = candidates[start:start + CHUNK]
        stored = store.embeddings(ns, [c.id for c in part if c.id not in with_context])
        kept = plain_vectors.stored({uuid.UUID(c.id): with_context[c.id]
                                     for c in part if c.id in with_context})
        stored.update((str(pk), vector) for pk, vector in kept.items())
        for offset, candidate in enumerate(part):
            vector = stored.get(candidate.id)
            if vector is None:
                missing.append(start + offset)
            else:
                vectors[start + offset] = vector
        if progress:
            progress("vectors", len(part), len(candidates))
    for start in range(0, len(missing), CHUNK):
        rows = missing[start:start + CHUNK]
        try:
            embedded = get_embedder().embed([candidates[i].content for i in rows])
        except Exception as exc:
            raise Unavailable("the embedding model failed; retry shortly.") from exc
        vectors[rows] = embedded
        plain_vectors.keep({uuid.UUID(candidates[i].id): (with_context[candidates[i].id], embedded[n])
                            for n, i in enumerate(rows) if candidates[i].id in with_context})
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def _apply(principal: Principal, outcome: Outcome,
           progress: Callable[[str, int, int], None] | None) -> None:
    """Each group in its own transaction (SQLite's write lock is never held for the whole
    run): its members locked and checked unchanged (still current, live, the same text);
    a group that changed meanwhile is left (``stale``)."""
    ns = outcome.namespace
    if progress:  # the apply stage begins (a job checks its requester may still merge)
        progress("apply", 0, len(outcome.groups))
    for group in outcome.groups:
        applied = _apply_group(principal, outcome, group)
        outcome.applied.append(applied)
        if applied:
            outcome.merged += 1
        else:
            outcome.stale += 1
        if progress:
            progress("apply", 1, len(outcome.groups))
    pairs = [(c.a, c.b, c.similarity, c.differs_in) for c in outcome.conflicts]
    for start in range(0, len(pairs), CONFLICT_CHUNK):
        # A transaction per chunk: SQLite's write lock is never held for all the links
        # (a dense namespace finds hundreds of thousands; every other writer would wait).
        chunk = pairs[start:start + CONFLICT_CHUNK]
        with writes.atomic() as write:
            live = {str(pk) for pk in Memory.objects.in_namespace_checked(ns).filter(
                pk__in={i for p in chunk for i in p[:2]}).order_by().values_list("pk", flat=True)}
            chunk = [p for p in chunk if p[0] in live and p[1] in live]
            linked = write.link_conflicts(ns, chunk, actor=principal)
            if linked:
                outcome.conflicts_linked += linked
                audit(principal, "memory.conflicts", namespace=ns,
                      record_ids=sorted({i for p in chunk for i in p[:2]}),
                      summary={"linked": linked})


def _apply_group(principal: Principal, outcome: Outcome, group: grouping.Group) -> bool:
    ns = outcome.namespace
    with writes.atomic() as write:
        rows = {str(m.pk): m for m in Memory.objects.live().select_for_update(of=("self",))
                .select_related("namespace").in_namespace_checked(ns).filter(pk__in=group.members)
                .order_by("pk")}
        if len(rows) != len(group.members) or any(
                rows[i].superseded_by_id is not None or rows[i].content != outcome.contents[i]
                or (i in outcome.versions and rows[i].version != outcome.versions[i])
                for i in group.members):
            return False  # a member went, was merged or edited since it was read
        if kept_apart.pairs_in(ns, group.members):
            return False  # a person kept two of them apart meanwhile
        survivor = rows[group.survivor]
        tags = grouping.merged_tags(survivor.tags or [], (rows[i].tags or [] for i in group.members))
        gained = set(tags) - set(survivor.tags or ())
        if gained & guarded_tags(ns):
            return False  # a grant naming a tag it would gain was given meanwhile
        others = [rows[i] for i in group.members if i != group.survivor]
        if gained:
            _retag(write, principal, survivor, tags, MERGE)
        outcome.superseded += write.supersede(ns, others, survivor,
                                              similarity=group.to_survivor(), actor=principal)
        text = outcome.merged_texts.get(group.survivor)
        if text is not None:
            merged_text.say(write, principal, survivor, text, [m.pk for m in others],
                            summarizer=outcome.summarizer)
        audit(principal, "memory.consolidate", namespace=ns, record_ids=group.members,
              summary={"survivor": group.survivor, "members": len(group.members),
                       "similarity": round(group.similarity, 4), "threshold": outcome.threshold,
                       "tags_gained": len(gained), "merged_text": text is not None})
    return True


def _retag(write: writes.Write, principal: Principal, memory: Memory, tags: list[str],
           by: str) -> None:
    """Give ``memory`` (locked) these tags as an ordinary versioned edit through the write
    path (version row, tag rows, a ``metadata`` outbox row so the vector index's tag
    filter follows, the live event), marked ``by`` merge or unmerge in its version so
    unmerge can tell consolidation's edits from a person's. Its audit entry is the
    group's (``memory.consolidate`` / ``memory.unmerge``)."""
    before = list(memory.tags or [])
    write.update(memory, {"tags": tags}, {"tags": {"before": before, "after": tags, "by": by}},
                 embeddings=None, actor=principal, audit=lambda *_: None)


def merge(principal: Principal, namespace: str | None, members: list[str], survivor: str,
          threshold: float | None = None, content: str | None = None,
          summarizer: str = "") -> Outcome:
    """Apply one proposal as a person accepted it (the dashboard's review): ``members``
    (at least two, at most ``grouping.MAX_GROUP``) of the namespace's current memories,
    ``survivor`` among them, all of one partition (kind, agent, subject). Checked and
    written as :func:`consolidate` applies a group; ``merged`` says whether it was (a
    member changed meanwhile: ``stale``).

    ``content``: the merged text the survivor says afterwards, when it differs (spacing
    aside) from its own: checked before anything is merged (a text the schema refuses
    merges nothing), then written as an ordinary versioned edit; ``rewritten`` says it was,
    ``rewrite_error`` why not (the merge stands). ``summarizer``: the summarizer wrote it
    (the person accepted its text as offered): marked so, as consolidation's own."""
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.EDIT)
    check_writable(ns)
    if content is not None:
        content = schemas.validate(schemas.MemoryUpdate, {"content": content},
                                   partial=True)["content"]  # the text as stored (trimmed)
    wanted = list(dict.fromkeys(str(m) for m in members))
    if not 2 <= len(wanted) <= grouping.MAX_GROUP or str(survivor) not in wanted:
        raise InvalidInput(f"give 2 to {grouping.MAX_GROUP} members, the survivor among them.",
                           field="members")
    rows = {str(m.pk): m for m in _candidates(ns, {}).filter(pk__in=wanted)}
    if len(rows) != len(wanted):
        raise Conflict("a member is gone, superseded, or cannot be merged (an event, a "
                       "summary): consolidate again.", field="members")
    apart = kept_apart.pairs_in(ns)  # with what was merged into them since
    if any(frozenset(pair) in apart for pair in itertools.combinations(wanted, 2)):
        raise Conflict("two of these memories were kept apart by a person: allow them "
                       "together first.", field="members")
    partitions = {partition(m.kind, m.agent_id, m.metadata, m.valid_from, m.valid_until)
                  for m in rows.values()}
    if len(partitions) > 1:
        raise InvalidInput("members of different kinds, agents, subjects or validity windows "
                           "are never merged.", field="members")
    own = rows[str(survivor)].tags or []
    tags = grouping.merged_tags(own, (m.tags or [] for m in rows.values()))
    if (set(tags) - set(own)) & guarded_tags(ns):
        raise InvalidInput("the kept memory would gain a tag that a sharing grant of this "
                           "namespace names (another namespace would see it): keep a member "
                           "that has every such tag.", field="survivor")
    if len(tags) > settings.MEMORYWEB_LIMITS["max_tags"]:
        raise InvalidInput(f"together the members hold {len(tags)} tags; a memory holds at "
                           f"most {settings.MEMORYWEB_LIMITS['max_tags']}.", field="members")
    vectors = _content_vectors(ns, [grouping.Candidate(i, rows[i].content, (), ()) for i in wanted],
                               {i for i in wanted if rows[i].context_memory_id}, None)
    similarity = {}
    for x in range(len(wanted)):
        for y in range(x + 1, len(wanted)):
            a, b = sorted((wanted[x], wanted[y]))
            similarity[(a, b)] = round(float(vectors[x] @ vectors[y]), 6)
    group = grouping.Group(sorted(wanted), str(survivor), similarity, tuple(tags))
    outcome = Outcome(ns, False, threshold or settings.MEMORYWEB_CONSOLIDATE_THRESHOLD,
                      len(wanted), len(similarity), [group], [],
                      {i: rows[i].content for i in wanted})
    applied = _apply_group(principal, outcome, group)
    outcome.applied.append(applied)
    outcome.merged, outcome.stale = int(applied), int(not applied)
    kept = rows[str(survivor)].content
    if applied and content is not None and " ".join(content.split()) != " ".join(kept.split()):
        try:
            _rewrite(principal, str(survivor), content, sorted(set(wanted) - {str(survivor)}),
                     summarizer)
        except ServiceError as exc:
            outcome.rewrite_error = exc.message
        else:
            outcome.rewritten = True
    return outcome


def _rewrite(principal: Principal, survivor: str, content: str, members: list[str],
             summarizer: str = "") -> None:
    """The survivor says the merged text: a versioned edit through the write path marked
    ``"by": "merge_text"`` with the members it was merged ``from``, so erasing one of
    them reverts it (apps/memories/merge_marks.py). Audited as an edit."""
    with writes.atomic() as write:
        memory = (Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                  .get(pk=survivor))
        merged_text.say(write, principal, memory, content, members, summarizer=summarizer)


def renamed(exc: InvalidInput, names: Mapping[str, str]) -> InvalidInput:
    """The same refusal naming the door's own field (a drop-in route's ``agent`` for the
    service's ``filters.agent_id``), so a caller reads back what it sent."""
    for name, door in names.items():
        if exc.field and (exc.field == name or exc.field.startswith((name + "[", name + "."))):
            exc.field = door + exc.field[len(name):]
    return exc


@dataclass(frozen=True)
class Unmerged:
    memory: Memory
    released: list[str]


def unmerge(principal: Principal, memory_id: Any) -> Unmerged:
    """Undo a merge (team admin): for a survivor, every memory merged into it is current
    again; for a superseded memory, that one alone. The survivor loses the tags its merges
    gave it that no memory still merged into it holds (:func:`_untag`). Audited; 409 if
    it is neither."""
    memory = services.editable(principal, memory_id)
    with writes.atomic() as write:
        if memory.superseded_by_id is not None:  # the survivor's lock first, as an erasure
            # takes them (merge_marks: survivors, then its delete of the members): no deadlock
            Memory.objects.select_for_update(of=("self",)).filter(
                pk=memory.superseded_by_id).first()
        memory = Memory.objects.select_for_update().select_related("namespace").get(pk=memory.pk)
        if Memory.objects.filter(superseded_by=memory).exists():
            survivor = memory
            released = write.release(memory.namespace, memory)
        elif memory.superseded_by_id is not None:
            survivor = (Memory.objects.select_for_update(of=("self",))
                        .select_related("namespace").get(pk=memory.superseded_by_id))
            released = write.release(memory.namespace, survivor, only=[memory.pk])
        else:
            raise Conflict("this memory is not merged: nothing was merged into it and it is "
                           "not superseded.", field="id")
        untexted = merged_text.unsay(write, principal, survivor, released)
        dropped = _untag(write, principal, survivor)
        audit(principal, "memory.unmerge", namespace=memory.namespace,
              record_ids=list(dict.fromkeys([memory.pk, *released,
                                             *([survivor.pk] if dropped or untexted else [])])),
              summary={"released": len(released), "tags_dropped": dropped,
                       "text_reverted": untexted})
    memory.refresh_from_db()
    return Unmerged(memory, [str(pk) for pk in released])


def _untag(write: writes.Write, principal: Principal, survivor: Memory) -> int:
    """After a release: take from ``survivor`` (locked) the tags consolidation gave it that
    no memory still merged into it holds, as a versioned edit; returns how many.

    Only while its latest edits are consolidation's own (tags versions marked ``by`` merge,
    unmerge or erasure, from its current version down: ``merge_marks.merge_gained``, which
    an erasure of a member shares): once anything else edited it (a person's edit, a
    revert, a merged text), its tags are what that edit left, and are kept as they are;
    the tags gained by merges before that edit are kept too."""
    gained = merge_marks.merge_gained(survivor)
    if not gained:
        return 0
    still = {tag for tags in Memory.objects.filter(superseded_by=survivor)
             .values_list("tags", flat=True) for tag in tags or ()}
    tags = [t for t in survivor.tags or [] if t not in gained or t in still]
    if tags == list(survivor.tags or []):
        return 0
    dropped = len(survivor.tags or []) - len(tags)
    _retag(write, principal, survivor, tags, UNMERGE)
    return dropped
