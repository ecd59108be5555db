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

:func:`merged_texts` tells a store erased after this one (the timeline's rollups, which
empty the nodes built from such a survivor) which survivors lose a merged text, and the
texts: from the plan, or, once :func:`erase` ran in this process, the survivors it took one
back from (ids only: the texts are gone).

The survivors are locked at once in primary-key order (:func:`_locked`; unmerge takes a
survivor's lock before its member's, as the erasure's delete follows), then planned on
the locked rows (a concurrent erasure's or a person's edit is seen; no version row read
before the lock is written). A version whose change is not well formed (:func:`_names`:
an imported or damaged history) is read as an edit that is not consolidation's.
As for unmerge, a person's edit of the survivor's tags after the merge (or a revert) makes
its tags theirs: they are kept, with the merges' gains before that edit; edits of other
fields are passed over. A person's content edit after a ``merge_text`` one keeps the
text (the merged text leaves that version's ``before``). The check (:func:`remaining`)
counts a dropped tag found on its survivor again, wherever it lives now, reading only the
survivors the certificate names (``touched.merged_survivors``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
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


def _names(value: Any) -> set[str] | None:
    """A list of strings (a tags change's ``before``/``after``, ``erased``, ``digests``,
    ``from``) as a set; None for anything else (an imported or damaged version): the
    readers below take such a version for an edit that is not a merge's."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return set(value)
    return None


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _changes(version: MemoryVersion) -> Mapping[str, Any]:
    return version.changes if isinstance(version.changes, Mapping) else {}


def _tags_change(version: MemoryVersion) -> Mapping[str, Any] | None:
    """The version's tags change if it is well formed (``before`` and ``after`` lists of
    strings, or absent); None otherwise."""
    change = _changes(version).get("tags")
    if not isinstance(change, Mapping) or any(
            _names(change.get(name) or []) is None for name in ("before", "after")):
        return None
    return change


def merge_gained(memory: Memory) -> set[str]:
    """The tags merges gave ``memory`` (each ``by: merge`` version's ``after`` less its
    ``before``), from its current version down while its edits are consolidation's own
    (tags edits marked merge, unmerge or erasure): an edit of anything else stops the walk
    (unmerge: the survivor is what that edit left)."""
    versions = memory.versions.filter(version__lte=memory.version).order_by("-version")
    return _gained(memory.version, versions, past_other_edits=False)


def _gained(current: int, versions: Iterable[MemoryVersion], *, past_other_edits: bool
            ) -> set[str]:
    """:func:`merge_gained` over these versions, newest first. With ``past_other_edits``
    (erasure) an edit that changes no tags is passed over, and only a tags edit of a
    person's (or a revert) stops the walk."""
    gained: set[str] = set()
    expected = current
    for version in versions:
        if version.version > current:
            continue
        if version.version != expected:
            break
        expected -= 1
        changes = _changes(version)
        if changes.get("tags") is None and (past_other_edits or _consolidation_text(changes)):
            continue
        change = _tags_change(version)  # a malformed one is no merge's: the walk stops
        if (change is None or change.get("by") not in TAG_MARKS
                or (not past_other_edits and set(changes) != {"tags"})):
            break
        if change["by"] == MERGE:
            gained |= _names(change.get("after") or []) - _names(change.get("before") or [])
    return gained


def _consolidation_text(changes: Mapping[str, Any]) -> bool:
    """Whether a version changes only the content, as consolidation's own: a merged text
    the summarizer wrote (``merge_text`` with ``summarizer``) or its revert by an unmerge
    (apps/lifecycle/merged_text.py). Unmerge's walk passes over them; a person's text
    stops it."""
    change = changes.get("content")
    return set(changes) == {"content"} and isinstance(change, Mapping) and (
        change.get("by") == UNMERGE
        or (change.get("by") == MERGE_TEXT and bool(change.get("summarizer"))))


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
    #: The merged texts that go (from its content or only its history).
    texts: set[str] = field(default_factory=set)

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
        for pk, by, tags in Memory.objects.in_namespace_checked(namespace).filter(
                pk__in=part, superseded_by__isnull=False
        ).order_by().values_list("pk", "superseded_by_id", "tags"):
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
    rows = _locked(sorted(chain)) if write is not None else chain
    for pk in sorted(chain, key=lambda key: (-_depth(key, chain), key)):
        memory = rows.get(pk)
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


def _locked(pks: Sequence[str]) -> dict[str, Memory]:
    """Lock these survivors, all at once and in primary-key order (so two erasures, or an
    erasure and an unmerge, take their locks in one order and cannot deadlock), and read
    them on the locked rows."""
    return {str(memory.pk): memory for part in stores.chunks(list(pks)) for memory in
            Memory.objects.select_for_update(of=("self",)).select_related("namespace")
            .filter(pk__in=part).order_by("pk")}


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
        gained = _gained(memory.version, versions, past_other_edits=True)
        still = {tag for member, tags in Memory.objects.filter(superseded_by_id=memory.pk)
                 .values_list("pk", "tags") if str(member) not in erased
                 for tag in tags_now.get(str(member), tags or ())}
        takeback.drop = (offered & gained & set(memory.tags or ())) - still
        takeback.scrub = offered - still - _held(versions) - (set(memory.tags or ())
                                                              - takeback.drop)
    replace = _tainted_texts(versions, tainted)
    takeback.texts = set(replace)
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
        change = _tags_change(version)
        if change is None:
            continue
        before, after = _names(change.get("before") or []), _names(change.get("after") or [])
        if change.get("by") == MERGE and not merged:
            merged = True
            held |= before
        elif change.get("by") not in TAG_MARKS:
            held |= after
            if not merged:
                held |= before
    return held


def _tainted_texts(versions: Sequence[MemoryVersion], tainted: set[str]) -> dict[str, str]:
    """Each merged text that goes -> the survivor's text before it: a ``merge_text``
    version drawn from a memory going (an erased member, or a survivor whose merged text
    goes), or built on such a text (the taint carries forward)."""
    replace: dict[str, str] = {}
    for version in reversed(versions):  # oldest first
        change = _changes(version).get("content")
        if not isinstance(change, Mapping) or change.get("by") != MERGE_TEXT:
            continue
        drawn = _names(change.get("from") or [])
        if drawn is None:  # malformed: not a merge's text
            continue
        before, after = change.get("before"), change.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        if tainted & drawn or before in replace:
            replace[after] = replace.get(before, before)
    return {text: back for text, back in replace.items() if text != back}


def _scrub(version: MemoryVersion, tags: set[str], replace: Mapping[str, str]) -> bool:
    """Take these tags and merged texts out of the version's ``changes``; whether it
    changed (then the field's change is marked ``"scrubbed": "erasure"``). A malformed
    tags change is left as it is (no tag list to take them from)."""
    changes = dict(_changes(version))
    change = _tags_change(version)
    if tags and change is not None:
        kept = {name: [t for t in change.get(name) or () if t not in tags]
                for name in ("before", "after") if isinstance(change.get(name), list)}
        if any(kept[name] != change[name] for name in kept):
            changes["tags"] = {**change, **kept, "scrubbed": ERASURE}
    change = changes.get("content")
    if replace and isinstance(change, Mapping):
        texts = {name: replace[change[name]] for name in ("before", "after")
                 if isinstance(change.get(name), str) and change[name] in replace}
        if texts:
            changes["content"] = {**change, **texts, "scrubbed": ERASURE}
    if changes == _changes(version):
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
        done = _run(namespace, ids, write)
    survivors = {str(takeback.survivor.pk) for takeback in done if takeback.texts}
    if survivors:  # for the stores erased after this one (ids only, never the texts)
        key = _key(namespace, ids)
        _texts_taken[key] = frozenset(survivors)
        _texts_taken.move_to_end(key)
        while len(_texts_taken) > _KEPT:
            _texts_taken.popitem(last=False)


#: Per erasure (namespace, ids), the survivors whose merged text this process's
#: :func:`erase` took back (the latest ``_KEPT``): a store erased after this one (the
#: timeline's rollups, apps/timeline/erasure.py) can no longer read them from the plan.
_KEPT = 32
_texts_taken: OrderedDict[tuple[Any, frozenset[str]], frozenset[str]] = OrderedDict()


def _key(namespace: Namespace, ids: Sequence[Any]) -> tuple[Any, frozenset[str]]:
    return namespace.pk, frozenset(str(i) for i in ids)


def merged_texts(namespace: Namespace, ids: Sequence[Any]) -> dict[str, set[str]]:
    """Each kept survivor whose merged text an erasure of ``ids`` removes (from its content,
    or only from its history), with those texts: read from the plan (the data
    :func:`erase` reads), so asked before it runs. Once it has run in this process, the
    survivors it took a merged text back from are added, without their texts (which are
    gone): :func:`texts_taken`."""
    found = {str(takeback.survivor.pk): set(takeback.texts)
             for takeback in plan(namespace, ids) if takeback.texts}
    for pk in texts_taken(namespace, ids):
        found.setdefault(pk, set())
    return found


def texts_taken(namespace: Namespace, ids: Sequence[Any]) -> frozenset[str]:
    """The survivors whose merged text this process's :func:`erase` of exactly these ids
    took back (empty: none, or another process ran it)."""
    return _texts_taken.get(_key(namespace, ids), frozenset())


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
    digests of its ``by: erasure`` versions naming an erased member). Only the survivors
    the certificate names (``touched.merged_survivors``) are read, by id, wherever they
    live now: a namespace merge moves a survivor with its versions and keeps its id, so
    they are not looked for by namespace (the digests name none); no other memory's
    history is opened (another tenant's key may be unavailable)."""
    if namespace is None:
        return None  # the survivors went with the namespace
    survivors = sorted({pk for entry in erased.touched.get("merged_survivors") or ()
                        if isinstance(entry, Mapping) and (pk := _uuid(entry.get("memory")))})
    wanted, held = set(erased.ids), 0
    for part in stores.chunks(survivors):
        for version in MemoryVersion.objects.filter(
                memory_id__in=part, changed_by=ACTOR.label).select_related(
                "memory", "memory__namespace"):
            change = _changes(version).get("tags")
            if not isinstance(change, Mapping):
                continue
            named, digests = _names(change.get("erased")), _names(change.get("digests") or [])
            if not named or not wanted & named or digests is None:
                continue
            held += sum(digest(tag) in digests for tag in version.memory.tags or ())
    return held
