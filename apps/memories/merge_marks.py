"""What a merge gave its survivor, read from the survivor's versions, and taken back when
a member is erased (issue 21, item 5; docs/lifecycle.md, "Erasure").

Consolidation (apps/lifecycle/consolidation.py) marks its edits of a survivor in their
version: ``{"tags": {"before", "after", "by": "merge"}}`` when the survivor takes its
group's tags, ``"by": "unmerge"`` when an unmerge takes them back, and
``{"content": {"before", "after", "by": "merge_text", "from": [member ids]}}`` when a
person accepted a merge with a text of their own. :func:`merge_gained` walks those marks
down from the survivor's current version (unmerge's ``_untag`` and the erasure share it).

When a certified erasure removes a member merged into a survivor that is kept, the
registered store ``merged_survivors`` (apps/memories/lineage_store.py) runs
:func:`erase` in the erasure's transaction, before the delete:

- the survivor loses the tags its merges gained that an erased member held and that no
  remaining member holds (its own tags from before the merge are never gained), as a
  versioned edit through the write path (tag rows, a ``metadata`` outbox row for the
  vector index, the live event) marked ``"by": "erasure"``: its ``before`` and ``after``
  are the tags left (the dropped ones are never written again), ``erased`` the member ids
  and ``digests`` a keyed hash of each dropped tag, which the check uses;
- those tags are scrubbed from the survivor's consolidation versions walked (the
  ``by: merge`` versions' ``before``/``after``), so its history no longer names them;
- a text given at a merge from an erased member (the latest content edit is the
  ``merge_text`` one) is reverted to the survivor's text before it, in the same edit, and
  the ``merge_text`` version's ``after`` is replaced by that text (``"scrubbed":
  "erasure"``): the merged text is kept nowhere;
- a survivor that was itself merged into another passes on what it lost (a chain).

As for unmerge, a person's edit of the survivor's tags after the merge (or a revert) makes
its tags theirs: they are kept, with the merges' gains before that edit; edits of other
fields are passed over. A person's content edit after a ``merge_text`` one keeps the
text. The check (:func:`remaining`) counts a dropped tag found on its survivor again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.audit.log import record as audit
from apps.core import keystore
from apps.core.roles import Role
from apps.memories import stores, writes
from apps.memories.models import Memory, MemoryVersion
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

#: The marks of consolidation's edits (``changes[field]["by"]``).
MERGE, UNMERGE, ERASURE, MERGE_TEXT = "merge", "unmerge", "erasure", "merge_text"
#: The tags edits a walk passes through: consolidation's and the erasure's own.
TAG_MARKS = frozenset({MERGE, UNMERGE, ERASURE})
#: Who writes an erasure's edits of kept survivors (``system:``: no agent's record counts).
ACTOR = Principal(label="system:erasure", agent_id="system:erasure", role=Role.SYSTEM)


def merge_gained(memory: Memory, *, past_other_edits: bool = False
                 ) -> tuple[set[str], list[MemoryVersion]]:
    """The tags merges gave ``memory`` (each ``by: merge`` version's ``after`` less its
    ``before``) and the consolidation versions walked, from its current version down while
    its edits are consolidation's own (tags edits marked merge, unmerge or erasure). An
    edit of anything else stops the walk (unmerge: the survivor is what that edit left);
    with ``past_other_edits`` (erasure) an edit that changes no tags is passed over, and
    only a tags edit of a person's (or a revert) stops it."""
    gained: set[str] = set()
    walked: list[MemoryVersion] = []
    expected = memory.version
    for version in memory.versions.filter(version__lte=expected).order_by("-version"):
        if version.version != expected:
            break
        expected -= 1
        changes = version.changes or {}
        change = changes.get("tags")
        if change is None and past_other_edits:
            continue
        if (not isinstance(change, Mapping) or change.get("by") not in TAG_MARKS
                or (not past_other_edits and set(changes) != {"tags"})):
            break
        walked.append(version)
        if change["by"] == MERGE:
            gained |= set(change.get("after") or ()) - set(change.get("before") or ())
    return gained, walked


def retag(write: writes.Write, actor: Any, memory: Memory, tags: list[str], by: str) -> None:
    """Give ``memory`` (locked) these tags as an ordinary versioned edit through the write
    path, marked ``by`` in its version. Its audit entry is the caller's."""
    before = list(memory.tags or [])
    write.update(memory, {"tags": tags}, {"tags": {"before": before, "after": tags, "by": by}},
                 embeddings=None, actor=actor, audit=lambda *_: None)


def digest(tag: str) -> str:
    """A dropped tag as the erasure version keeps it: keyed (the server's selector key),
    so the version never names it and a dictionary cannot find it; it names no namespace,
    so it holds when the survivor moves (a namespace merge)."""
    return keystore.keyed_hash("merged-tag", tag)


# --- an erasure -------------------------------------------------------------------------

@dataclass
class Takeback:
    """What an erasure takes back from one kept survivor."""

    survivor: Memory
    #: The erased memories it loses something of: its erased members, and those of the
    #: memories merged into it that lose something (a chain).
    erased: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    walked: list[MemoryVersion] = field(default_factory=list)
    #: The ``merge_text`` version whose text goes, if any.
    text: MemoryVersion | None = None

    def __bool__(self) -> bool:
        return bool(self.drop or self.text)


def plan(namespace: Namespace, ids: Sequence[Any]) -> list[Takeback]:
    """The survivors an erasure of ``ids`` takes something back from, deepest first (a
    survivor merged into another is planned before it, with what it loses passed up)."""
    erased = {str(i) for i in ids}
    given: dict[str, set[str]] = {}  # survivor -> the tags its erased members held
    direct: dict[str, set[str]] = {}
    for part in stores.chunks(sorted(erased)):
        for pk, by, tags in Memory.objects.filter(
                namespace=namespace, pk__in=part, superseded_by__isnull=False
        ).values_list("pk", "superseded_by_id", "tags"):
            if str(by) not in erased:
                given.setdefault(str(by), set()).update(tags or ())
                direct.setdefault(str(by), set()).add(str(pk))
    if not given:
        return []
    chain: dict[str, Memory] = {}  # every survivor concerned and those above it, kept
    todo = list(given)
    while todo:
        pk = todo.pop()
        if pk in chain or pk in erased:
            continue
        memory = Memory.objects.select_related("namespace").filter(pk=pk).first()
        if memory is None:
            continue
        chain[pk] = memory
        if memory.superseded_by_id is not None:
            todo.append(str(memory.superseded_by_id))
    tainted, tags_now, plans = set(erased), {pk: list(m.tags or []) for pk, m in chain.items()}, []
    for pk in sorted(chain, key=lambda key: -_depth(key, chain)):
        memory, offered = chain[pk], given.get(pk, set())
        takeback = Takeback(memory, direct.get(pk, set()))
        gained, takeback.walked = merge_gained(memory, past_other_edits=True)
        if offered & gained:
            still = {tag for member, tags in Memory.objects.filter(superseded_by_id=pk)
                     .values_list("pk", "tags") if str(member) not in erased
                     for tag in tags_now.get(str(member), tags or ())}
            takeback.drop = (offered & gained & set(tags_now[pk])) - still
        takeback.text = _merge_text(memory, tainted)
        if not takeback:
            continue
        plans.append(takeback)
        tags_now[pk] = [t for t in tags_now[pk] if t not in takeback.drop]
        if takeback.text is not None:
            tainted.add(pk)
        above = memory.superseded_by_id
        if above is not None and str(above) in chain:  # it passes up what it lost
            given.setdefault(str(above), set()).update(takeback.drop)
            direct.setdefault(str(above), set()).update(takeback.erased)
    return plans


def _depth(pk: str, chain: Mapping[str, Memory]) -> int:
    depth, memory = 0, chain[pk]
    while memory.superseded_by_id is not None and str(memory.superseded_by_id) in chain:
        depth, memory = depth + 1, chain[str(memory.superseded_by_id)]
    return depth


def _merge_text(memory: Memory, tainted: set[str]) -> MemoryVersion | None:
    """The survivor's ``merge_text`` version when it is its latest content edit and drew on
    a memory going (an erased member, or a survivor whose merged text goes)."""
    for version in memory.versions.order_by("-version"):
        change = (version.changes or {}).get("content")
        if change is None:
            continue
        if (isinstance(change, Mapping) and change.get("by") == MERGE_TEXT
                and not change.get("scrubbed") and tainted & set(change.get("from") or ())):
            return version
        return None
    return None


def touched(namespace: Namespace, ids: Sequence[Any]) -> list[dict[str, str]]:
    """The certificate's ``touched.merged_survivors``: each kept survivor that loses tags
    (``tags_dropped``) or a merged text (``text_reverted``). Ids only."""
    found = []
    for takeback in plan(namespace, ids):
        pk = str(takeback.survivor.pk)
        if takeback.drop:
            found.append({"memory": pk, "change": "tags_dropped"})
        if takeback.text is not None:
            found.append({"memory": pk, "change": "text_reverted"})
    return sorted(found, key=lambda entry: (entry["memory"], entry["change"]))


def erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """In the erasure's transaction, before the delete (the members are still there): take
    back from each kept survivor what the erased members gave it (module docstring).
    Idempotent: a retried erasure finds no member left, so nothing to take back."""
    for takeback in plan(namespace, ids):
        _take_back(namespace, takeback)


def _take_back(namespace: Namespace, takeback: Takeback) -> None:
    with writes.atomic() as write:
        memory = (Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                  .get(pk=takeback.survivor.pk))
        erased_ids = sorted(takeback.erased)
        values: dict[str, Any] = {}
        edits: dict[str, Any] = {}
        if takeback.drop:
            tags = [t for t in memory.tags or [] if t not in takeback.drop]
            values["tags"] = tags
            edits["tags"] = {"before": tags, "after": tags, "by": ERASURE, "erased": erased_ids,
                             "dropped": len(takeback.drop),
                             "digests": sorted(digest(t) for t in takeback.drop)}
        scrubbed = []
        if takeback.text is not None:
            text = takeback.text.changes["content"]["before"]
            values["content"] = text
            edits["content"] = {"before": text, "after": text, "by": ERASURE,
                                "erased": erased_ids}
            changes = dict(takeback.text.changes)
            changes["content"] = {**changes["content"], "after": text, "scrubbed": ERASURE}
            takeback.text.changes = changes
            scrubbed.append(takeback.text)
        for version in takeback.walked:  # the dropped tags out of the merges' versions
            change = (version.changes or {}).get("tags")
            if not takeback.drop or not isinstance(change, Mapping):
                continue
            kept = {name: [t for t in change.get(name) or () if t not in takeback.drop]
                    for name in ("before", "after")}
            if kept != {name: list(change.get(name) or ()) for name in ("before", "after")}:
                version.changes = {**version.changes, "tags": {**change, **kept}}
                scrubbed.append(version)

        def entry(edited: Memory, changed: dict[str, Any]) -> None:
            audit(ACTOR, "memory.update", namespace=namespace, record_ids=[edited.pk],
                  summary={"fields": sorted(changed), "version": edited.version,
                           "by": ERASURE, "erased": erased_ids})

        write.update(memory, values, edits, embeddings=None, actor=ACTOR, audit=entry)
        if scrubbed:
            write.rewrite_versions(scrubbed)


def remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    """Tags an erasure of these ids dropped that are on their survivor again (found by the
    digests of its ``by: erasure`` versions naming an erased member)."""
    if namespace is None:
        return None  # the survivors went with the namespace
    wanted, held = set(erased.ids), 0
    for version in MemoryVersion.objects.filter(
            memory__namespace=namespace, changed_by=ACTOR.label).select_related("memory"):
        change = (version.changes or {}).get("tags")
        if not isinstance(change, Mapping) or not wanted & set(change.get("erased") or ()):
            continue
        digests = set(change.get("digests") or ())
        held += sum(digest(tag) in digests for tag in version.memory.tags or ())
    return held
