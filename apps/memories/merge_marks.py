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
- the tags the erased members gave it are scrubbed from every one of its versions (each
  tags change's ``before``/``after``, below a person's edit too) unless something kept
  holds them: a remaining member, its own tags from before its first merge, a person's
  tags edit (or a revert) whose ``after`` has them;
- a merged text drawn from a memory going (a ``merge_text`` version whose ``from`` names
  an erased member), and every merged text built on one (taint carries forward), is
  replaced in every version holding it (``"scrubbed": "erasure"``) by the survivor's text
  before them; while its content is still such a text it is reverted to that text in the
  same edit: the merged text is kept nowhere;
- a survivor that was itself merged into another passes on what it lost (a chain).

Each survivor is locked, then read again and planned on the locked row (a concurrent
erasure's or a person's edit is seen; no version row read before the lock is written).
As for unmerge, a person's edit of the survivor's tags after the merge (or a revert) makes
its tags theirs: they are kept, with the merges' gains before that edit; edits of other
fields are passed over. A person's content edit after a ``merge_text`` one keeps the
text (the merged text leaves that version's ``before``). The check (:func:`remaining`)
counts a dropped tag found on its survivor again, wherever it lives now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    versions = memory.versions.filter(version__lte=memory.version).order_by("-version")
    return _gained(memory.version, versions, past_other_edits=past_other_edits)


def _gained(current: int, versions: Iterable[MemoryVersion], *, past_other_edits: bool
            ) -> tuple[set[str], list[MemoryVersion]]:
    """:func:`merge_gained` over these versions, newest first."""
    gained: set[str] = set()
    walked: list[MemoryVersion] = []
    expected = current
    for version in versions:
        if version.version > current:
            continue
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
    #: The tags it loses now.
    drop: set[str] = field(default_factory=set)
    #: The tags scrubbed from its versions (those an erased member gave it that nothing
    #: kept holds: no remaining member, its own tags from before its merges, no person's).
    scrub: set[str] = field(default_factory=set)
    #: The text its merged text is reverted to, if its content is still one.
    text: str | None = None
    #: Its version rows rewritten (read after the lock when the erasure writes).
    versions: list[MemoryVersion] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.drop or self.text is not None or self.versions)


def plan(namespace: Namespace, ids: Sequence[Any]) -> list[Takeback]:
    """What an erasure of ``ids`` would take back, read without locks (the certificate's
    ``touched``): the survivors concerned, deepest first."""
    return _run(namespace, ids, None)


def _survivors(namespace: Namespace, erased: set[str]
               ) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, Memory]]:
    """The tags each survivor's erased members hold, their ids, and every kept survivor
    concerned with those it was merged into (a chain)."""
    given: dict[str, set[str]] = {}  # survivor -> the tags its erased members held
    direct: dict[str, set[str]] = {}
    for part in stores.chunks(sorted(erased)):
        for pk, by, tags in Memory.objects.filter(
                namespace=namespace, pk__in=part, superseded_by__isnull=False
        ).values_list("pk", "superseded_by_id", "tags"):
            if str(by) not in erased:
                given.setdefault(str(by), set()).update(tags or ())
                direct.setdefault(str(by), set()).add(str(pk))
    chain: dict[str, Memory] = {}
    todo = set(given)
    while todo:  # a level of the chains at a time
        found = [memory for part in stores.chunks(sorted(todo)) for memory in
                 Memory.objects.select_related("namespace").filter(pk__in=part)]
        chain.update((str(memory.pk), memory) for memory in found)
        todo = {str(memory.superseded_by_id) for memory in found
                if memory.superseded_by_id is not None} - set(chain) - erased
    return given, direct, chain


def _run(namespace: Namespace, ids: Sequence[Any], write: writes.Write | None
         ) -> list[Takeback]:
    """Plan (``write`` None) or take back, survivor by survivor, deepest first: with a
    ``write``, each survivor is locked, then read again and planned on the locked row, so
    a concurrent erasure's or a person's edit is seen, and no version row read before the
    lock is written. A survivor merged into another passes up what it lost."""
    erased = {str(i) for i in ids}
    given, direct, chain = _survivors(namespace, erased)
    tainted, tags_now, done = set(erased), {}, []
    for pk in sorted(chain, key=lambda key: -_depth(key, chain)):
        memory = chain[pk]
        if write is not None:
            memory = (Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                      .filter(pk=pk).first())
            if memory is None:
                continue
        takeback = _assess(memory, given.get(pk, set()), direct.get(pk, set()), erased,
                           tainted, tags_now)
        if not takeback:
            continue
        if write is not None:
            _take_back(write, namespace, takeback)
        done.append(takeback)
        tags_now[pk] = [t for t in memory.tags or [] if t not in takeback.drop]
        if takeback.text is not None:
            tainted.add(pk)
        above = memory.superseded_by_id
        if above is not None and str(above) in chain:  # it passes up what it lost
            given.setdefault(str(above), set()).update(takeback.scrub | takeback.drop)
            direct.setdefault(str(above), set()).update(takeback.erased)
    return done


def _depth(pk: str, chain: Mapping[str, Memory]) -> int:
    depth, memory = 0, chain[pk]
    while memory.superseded_by_id is not None and str(memory.superseded_by_id) in chain:
        depth, memory = depth + 1, chain[str(memory.superseded_by_id)]
    return depth


def _assess(memory: Memory, offered: set[str], direct: set[str], erased: set[str],
            tainted: set[str], tags_now: Mapping[str, list[str]]) -> Takeback:
    """What ``memory`` loses (module docstring), from its versions read once."""
    takeback = Takeback(memory, set(direct))
    versions = list(memory.versions.order_by("-version"))  # newest first
    if offered:
        gained, _ = _gained(memory.version, versions, past_other_edits=True)
        still = {tag for member, tags in Memory.objects.filter(superseded_by_id=memory.pk)
                 .values_list("pk", "tags") if str(member) not in erased
                 for tag in tags_now.get(str(member), tags or ())}
        takeback.drop = (offered & gained & set(memory.tags or ())) - still
        takeback.scrub = offered - still - _held(versions) - (set(memory.tags or ())
                                                              - takeback.drop)
    replace = _tainted_texts(versions, tainted)
    if memory.content in replace:
        takeback.text = replace[memory.content]
    for version in versions:
        if _scrub(version, takeback.scrub, replace):
            takeback.versions.append(version)
    return takeback


def _held(versions: Sequence[MemoryVersion]) -> set[str]:
    """The tags the survivor holds of its own: those before its first merge (its tags
    edits then, either side), and those a person's tags edit (or a revert) left since."""
    held: set[str] = set()
    merged = False
    for version in reversed(versions):  # oldest first
        change = (version.changes or {}).get("tags")
        if not isinstance(change, Mapping):
            continue
        if change.get("by") == MERGE and not merged:
            merged = True
            held |= set(change.get("before") or ())
        elif change.get("by") not in TAG_MARKS:
            held |= set(change.get("after") or ())
            if not merged:
                held |= set(change.get("before") or ())
    return held


def _tainted_texts(versions: Sequence[MemoryVersion], tainted: set[str]) -> dict[str, str]:
    """Each merged text that goes -> the survivor's text before it: a ``merge_text``
    version drawn from a memory going (an erased member, or a survivor whose merged text
    goes), or built on such a text (the taint carries forward)."""
    replace: dict[str, str] = {}
    for version in reversed(versions):  # oldest first
        change = (version.changes or {}).get("content")
        if not isinstance(change, Mapping) or change.get("by") != MERGE_TEXT:
            continue
        before, after = change.get("before"), change.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        if tainted & set(change.get("from") or ()) or before in replace:
            replace[after] = replace.get(before, before)
    return {text: back for text, back in replace.items() if text != back}


def _scrub(version: MemoryVersion, tags: set[str], replace: Mapping[str, str]) -> bool:
    """Take these tags and merged texts out of the version's ``changes``; whether it
    changed (then it is marked ``"scrubbed": "erasure"``)."""
    changes = dict(version.changes or {})
    change = changes.get("tags")
    if tags and isinstance(change, Mapping):
        kept = {name: [t for t in change.get(name) or () if t not in tags]
                for name in ("before", "after") if isinstance(change.get(name), list)}
        if any(kept[name] != change[name] for name in kept):
            changes["tags"] = {**change, **kept}
    change = changes.get("content")
    if replace and isinstance(change, Mapping):
        texts = {name: replace[change[name]] for name in ("before", "after")
                 if isinstance(change.get(name), str) and change[name] in replace}
        if texts:
            changes["content"] = {**change, **texts, "scrubbed": ERASURE}
    if changes == (version.changes or {}):
        return False
    version.changes = changes
    return True


def touched(namespace: Namespace, ids: Sequence[Any]) -> list[dict[str, str]]:
    """The certificate's ``touched.merged_survivors``: each kept survivor that loses tags
    (``tags_dropped``), a merged text (``text_reverted``), or only what its history says
    (``history_scrubbed``). Ids only."""
    found = []
    for takeback in plan(namespace, ids):
        pk = str(takeback.survivor.pk)
        if takeback.drop:
            found.append({"memory": pk, "change": "tags_dropped"})
        if takeback.text is not None:
            found.append({"memory": pk, "change": "text_reverted"})
        if not takeback.drop and takeback.text is None:
            found.append({"memory": pk, "change": "history_scrubbed"})
    return sorted(found, key=lambda entry: (entry["memory"], entry["change"]))


def erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """In the erasure's transaction, before the delete (the members are still there): take
    back from each kept survivor what the erased members gave it (module docstring).
    Idempotent: a retried erasure finds no member left, so nothing to take back."""
    with writes.atomic() as write:
        _run(namespace, ids, write)


def _take_back(write: writes.Write, namespace: Namespace, takeback: Takeback) -> None:
    """Write what :func:`_assess` found on the locked survivor."""
    memory, erased_ids = takeback.survivor, sorted(takeback.erased)
    values: dict[str, Any] = {}
    edits: dict[str, Any] = {}
    if takeback.drop:
        tags = [t for t in memory.tags or [] if t not in takeback.drop]
        values["tags"] = tags
        edits["tags"] = {"before": tags, "after": tags, "by": ERASURE, "erased": erased_ids,
                         "dropped": len(takeback.drop),
                         "digests": sorted(digest(t) for t in takeback.drop)}
    if takeback.text is not None:
        values["content"] = takeback.text
        edits["content"] = {"before": takeback.text, "after": takeback.text, "by": ERASURE,
                            "erased": erased_ids}

    def entry(edited: Memory, changed: dict[str, Any]) -> None:
        audit(ACTOR, "memory.update", namespace=namespace, record_ids=[edited.pk],
              summary={"fields": sorted(changed), "version": edited.version,
                       "by": ERASURE, "erased": erased_ids})

    if values:
        write.update(memory, values, edits, embeddings=None, actor=ACTOR, audit=entry)
    if takeback.versions:
        write.rewrite_versions(takeback.versions)


def remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    """Tags an erasure of these ids dropped that are on their survivor again (found by the
    digests of its ``by: erasure`` versions naming an erased member), wherever the survivor
    lives now: a namespace merge moves it with its versions, so they are not looked for by
    namespace (the digests name none)."""
    if namespace is None:
        return None  # the survivors went with the namespace
    wanted, held = set(erased.ids), 0
    for version in MemoryVersion.objects.filter(changed_by=ACTOR.label).select_related(
            "memory", "memory__namespace"):
        change = (version.changes or {}).get("tags")
        if not isinstance(change, Mapping) or not wanted & set(change.get("erased") or ()):
            continue
        digests = set(change.get("digests") or ())
        held += sum(digest(tag) in digests for tag in version.memory.tags or ())
    return held
