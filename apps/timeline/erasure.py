"""Erasure reaches rollups: the store timeline registers in the registry
(apps/memories/stores.py), so every certified erasure, its checks and
``verify_certificate`` cover it without a list of their own.

When memories are erased, the nodes built from them — the segments that list them as
sources, every node holding a grip to one (a day whose rebuild failed after its segment
was rebuilt without the memory still quotes it), and the day, week, month and year above
each — are emptied in the erasure's transaction (summary, parts, grips, their summary
memory deleted through the write path while SQLite zeroes freed pages) and marked
``pending``: no erased text survives the commit. They are rebuilt **after the commit**
by the offline summariser (no network, no summarising under the erasure's write lock);
a period with nothing left is removed; what that rebuild cannot do (another build holds
the tree) the next build does. A node whose own summary memory is erased is emptied and
stays so while its inputs are unchanged (status ``erased``), and its ancestors are
rebuilt without it. The nodes naming a kept survivor whose merged text the erasure takes
back (``merged_survivors``, apps/memories/merge_marks.py ``merged_texts``) are emptied
the same way and rebuilt from its reverted text (the survivor stays an input), and those
texts' fingerprints join the check's. The certificate lists the nodes touched
(``touched.rollups``).

What the check (``remaining``) proves, see docs/timeline.md "Erasure": ids (no grip,
source or summary memory names an erased memory); whole-text hashes (no summary part or
grip excerpt is an erased memory's whole text); and, during the erasure itself only,
sentence and 8-word fingerprints of the erased texts (apps/timeline/fingerprints.py:
no part or excerpt quotes a sentence of one that no remaining memory also holds). A part or
excerpt the timeline can cut from a remaining (non-summary) memory passes both: a part
that is one of the memory's sentences as the summariser splits them
(apps/core/summarizer_extractive.py ``split_units``), or the start of one cut at a space
with an ellipsis (``shorten``); a grip's excerpt that is one of the sentences of the
memory it names. The rebuild quotes the remaining memories' sentences, and one of them may
be an erased memory's whole text, or an erased sentence. Text merely contained in a
remaining memory (inside a word, or mid-sentence) explains nothing (``_unexplained``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import transaction

from apps.audit.log import record as audit
from apps.core import conf as core_conf
from apps.core.key_providers import KeyUnavailable
from apps.core.kinds import MemoryKind
from apps.memories import merge_marks, sealing, stores, writes
from apps.memories.models import Memory, content_hash
from apps.tenancy.models import Namespace
from apps.timeline import changes, fingerprints, periods
from apps.timeline.build import ACTOR, Builder, BuildReport, release_lease, renew_lease, take_lease
from apps.timeline.models import Grip, Level, NodeStatus, RollupNode, RollupSource
from apps.timeline.representation import node_event

#: The levels whose period holds a day (a day's ancestors by input: a month is built from
#: its days, so a day reaches its week, its month and its year).
_ABOVE_DAY = (Level.DAY, Level.WEEK, Level.MONTH, Level.YEAR)
#: What ``shorten`` (apps/core/summarizer.py) ends a shortened part with.
ELLIPSIS = "\u2026"
log = logging.getLogger(__name__)


@dataclass
class Affected:
    """The nodes an erasure of some memories changes."""

    #: Nodes whose own summary memory is erased.
    erased: list[RollupNode] = field(default_factory=list)
    #: Nodes built from an erased memory (or from an erased node), to empty and rebuild.
    emptied: list[RollupNode] = field(default_factory=list)
    #: Per tree (agent id), the days to rebuild.
    days: dict[str, set[dt.date]] = field(default_factory=lambda: defaultdict(set))

    def __bool__(self) -> bool:
        return bool(self.erased or self.emptied)


def affected(namespace: Namespace, ids: Sequence[Any], survivors: Collection[str] = ()
             ) -> Affected:
    """The nodes an erasure of ``ids`` changes; ``survivors``: kept memories whose merged
    text it takes back (apps/memories/merge_marks.py), whose nodes are emptied and rebuilt
    like those of an erased memory (the survivor stays, with its reverted text)."""
    wanted = [str(i) for i in ids]
    found = Affected()
    for part in stores.chunks(wanted):
        found.erased += list(RollupNode.objects.filter(namespace=namespace, memory_id__in=part))
    built_from: set[Any] = set()
    for part in stores.chunks(sorted({*wanted, *survivors})):
        built_from |= set(RollupSource.objects.filter(
            node__namespace=namespace, memory_id__in=part).values_list("node_id", flat=True))
        # A grip quotes the memory: a node whose rebuild failed after its children were
        # rebuilt without it has no source row naming it, but still its text.
        built_from |= set(Grip.objects.filter(
            node__namespace=namespace, memory_id__in=part).values_list("node_id", flat=True))
    own = {node.pk for node in found.erased}
    direct = list(RollupNode.objects.filter(pk__in=built_from).exclude(pk__in=own))
    years: dict[str, set[dt.datetime]] = defaultdict(set)
    for node in [*direct, *found.erased]:
        day = periods.day_of(node.start)
        if not periods.covered_day(day):
            continue  # never built (periods.LIMIT); nothing above it either
        if node.level in (Level.SEGMENT, Level.DAY):
            found.days[node.agent_id].add(day)
        elif node.level == Level.MONTH:  # a month is an input of its year only
            years[node.agent_id].add(node.start)
    seen = set(own) | {node.pk for node in direct}
    found.emptied = direct
    for agent_id in set(found.days) | set(years):
        for level in _ABOVE_DAY:
            starts = {periods.start_of(level, day) for day in found.days.get(agent_id, ())}
            if level == Level.YEAR:
                starts |= {periods.start_of(Level.YEAR, month.date()) for month in years[agent_id]}
            for node in RollupNode.objects.filter(namespace=namespace, agent_id=agent_id,
                                                  level=level, start__in=starts):
                if node.pk not in seen:
                    seen.add(node.pk)
                    found.emptied.append(node)
    return found


def touched(namespace: Namespace, ids: Sequence[Any]) -> list[dict[str, Any]]:
    """The certificate's ``touched.rollups``: each node the erasure changes (``erased``:
    its own summary memory is erased; ``rebuilt``: emptied, then rebuilt without the
    erased memories or removed if nothing is left)."""
    found = affected(namespace, ids, _remember(namespace, ids))
    rows = [{"id": str(node.pk), "level": node.level, "start": node.start.isoformat(),
             "agent_id": node.agent_id, "change": change}
            for change, nodes in (("erased", found.erased), ("rebuilt", found.emptied))
            for node in nodes]
    return sorted(rows, key=lambda row: (row["agent_id"], row["start"], row["level"], row["id"]))


def _remember(namespace: Namespace, ids: Sequence[Any]) -> set[str]:
    """The erased texts' fingerprints, for this erasure's check (taken while the rows are
    there: ``touched`` and ``erase`` run before the delete), with those of the merged texts
    it takes back from kept survivors (``merged_survivors``, which is erased first: the
    certificate's ``touched``, asked before any store is erased, takes them). Returns those
    survivors' ids."""
    try:
        merged = merge_marks.merged_texts(namespace, ids)
    except KeyUnavailable:  # its survivors' histories no longer open: nothing taken back
        merged = {}
    if fingerprints.known(namespace.pk, ids):
        return set(merged)
    prints: set[str] = set()
    try:
        for part in stores.chunks([str(i) for i in ids]):
            prints |= fingerprints.of_all(text for _, text in sealing.texts(
                Memory.objects.in_namespace_checked(namespace).filter(pk__in=part).order_by()))
        prints |= fingerprints.of_all(text for texts in merged.values() for text in texts)
    except KeyUnavailable:  # a shredded key (a restore replaying a namespace's deletion):
        prints = set()  # no text of it opens any more, its summaries' neither
    fingerprints.remember(namespace.pk, ids, prints)
    return set(merged)


def erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """In the erasure's transaction, before its delete (the rows are still there): empty
    the affected nodes (status ``pending``, or ``erased`` for a node whose own summary
    memory goes), so that no erased text survives the commit; rebuild them after the
    commit, outside the erasure's transaction. Idempotent: a retried erasure finds
    nothing left that names them (and rebuilds what is still pending)."""
    found = affected(namespace, ids, _remember(namespace, ids))
    erased_ids = {str(i) for i in ids}
    if not found:
        return
    if Memory.objects.filter(namespace=namespace).count() <= len(erased_ids):
        _drop_everything(namespace, erased_ids)  # the whole namespace goes: nothing to rebuild
        return
    with writes.atomic() as write:
        for node in found.erased:
            _empty(write, namespace, node, NodeStatus.ERASED, erased_ids)
        for node in found.emptied:
            _empty(write, namespace, node, NodeStatus.PENDING, erased_ids)
        for part in stores.chunks(sorted(erased_ids)):
            RollupSource.objects.filter(node__namespace=namespace, memory_id__in=part).delete()
            Grip.objects.filter(node__namespace=namespace, memory_id__in=part).delete()
        audit(ACTOR, "timeline.erase", namespace=namespace,
              record_ids=[node.pk for node in (*found.erased, *found.emptied)],
              summary={"erased": len(found.erased), "emptied": len(found.emptied)})
    scopes = {agent_id: set(days) for agent_id, days in found.days.items()}
    for agent_id in {node.agent_id for node in found.emptied} - set(scopes):
        scopes[agent_id] = set()  # its pending nodes only
    # After the commit: summarising whole days must not hold the write lock, nor run the
    # write path's vector work inside the erasure's uncommitted transaction. (Outside a
    # transaction it runs now; ``exclude`` keeps the rows about to be deleted out.)
    transaction.on_commit(partial(_rebuild, namespace.pk, scopes, frozenset(erased_ids)),
                          robust=True)


def _rebuild(namespace_pk: Any, scopes: dict[str, set[dt.date]], erased_ids: frozenset[str]) -> None:
    """Rebuild an erasure's emptied nodes, offline, each tree under its lease. A tree
    another build holds keeps them ``pending``: that build or the next rebuilds them."""
    from apps.core.summarizer_extractive import ExtractiveSummarizer

    namespace = Namespace.objects.filter(pk=namespace_pk).first()
    if namespace is None:
        return
    interim = core_conf.summarizer().name != "extractive"
    for agent_id, days in sorted(scopes.items()):
        token = take_lease(namespace, agent_id)
        if token is None:
            log.info("timeline of %s/%s is being built: its erased nodes stay pending",
                     namespace.slug, agent_id or "*")
            continue
        try:
            Builder(namespace, agent_id, ExtractiveSummarizer(),
                    BuildReport(namespace.slug, agent_id), exclude=erased_ids, scope=days,
                    interim=interim, heartbeat=partial(renew_lease, namespace, agent_id, token),
                    ).run()
        finally:
            release_lease(namespace, agent_id, token)


def _empty(write: writes.Write, namespace: Namespace, node: RollupNode, status: str,
           erased_ids: set[str]) -> None:
    """The node without its text: summary, parts, grips, its summary memory (deleted here
    unless the erasure deletes it itself, then remembered by hash)."""
    memory = node.memory_id
    if memory and str(memory) not in erased_ids:
        write.delete(namespace, [memory], actor=ACTOR, audit=lambda *args: None, secure=True)
    elif memory and status == NodeStatus.ERASED:
        node.erased_content_sha256 = Memory.objects.filter(pk=memory).values_list(
            "content_hash", flat=True).first() or ""
    Grip.objects.filter(node=node).delete()
    node.summary, node.parts, node.memory, node.status = "", [], None, status
    node.revision += 1
    if status == NodeStatus.PENDING:
        node.input_digest = ""
    node.save()
    changes.announce("updated", namespace, node_event(node), ACTOR)


def _drop_everything(namespace: Namespace, erased_ids: set[str]) -> None:
    """Every memory of the namespace is erased (or the namespace is being deleted): its
    timeline goes whole. The summary memories are among the erased ids."""
    with transaction.atomic():
        nodes = list(RollupNode.objects.filter(namespace=namespace).values_list("pk", flat=True))
        RollupNode.objects.filter(namespace=namespace).delete()
        audit(ACTOR, "timeline.erase", namespace=namespace, record_ids=nodes,
              summary={"removed": len(nodes)})


def forget_tree(namespace: Namespace) -> int:
    """Drop a namespace's whole timeline: its nodes' summary memories (deleted through the
    write path, their pages zeroed) and every node, audited. For a namespace merge,
    before the source's memories move (the target builds its own timeline from them).
    Returns how many nodes went."""
    summaries = [str(pk) for pk in RollupNode.objects.filter(
        namespace=namespace, memory__isnull=False).values_list("memory_id", flat=True)]
    with writes.atomic() as write:
        if summaries:
            write.delete(namespace, summaries, actor=ACTOR, audit=lambda *args: None, secure=True)
        nodes = RollupNode.objects.filter(namespace=namespace).count()
        _drop_everything(namespace, set(summaries))
    return nodes


# --- the store --------------------------------------------------------------------------

def count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    """Nodes of the namespace (``stats``), or the entries naming these memory ids."""
    if ids is None:
        return RollupNode.objects.filter(namespace=namespace).count()
    wanted = [str(i) for i in ids]
    return (stores.count_in(RollupSource.objects.filter(node__namespace=namespace), "memory_id", wanted)
            + stores.count_in(RollupNode.objects.filter(namespace=namespace), "memory_id", wanted))


def remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    """Sources, grips and summary memories naming an erased memory, plus summary parts and
    grip excerpts that are a whole erased memory's text (by content hash) or — during the
    erasure, while its fingerprints are known — quote a sentence or 8 words of one, unless
    the timeline can cut that text from a remaining memory (a sentence of it, a shortened
    one; for an excerpt, a sentence of the grip's own memory) or, for fingerprints, the
    remaining memories hold every one matched (``_unexplained``)."""
    if namespace is None:
        return None  # its nodes went with it
    ids = list(erased.ids)
    held = (stores.count_in(RollupSource.objects.all(), "memory_id", ids)
            + stores.count_in(Grip.objects.all(), "memory_id", ids)
            + stores.count_in(RollupNode.objects.all(), "memory_id", ids))
    hashes = set(erased.hashes)
    if hashes:  # text a live memory also holds is that memory's to show
        hashes -= set(Memory.objects.filter(namespace=namespace, content_hash__in=hashes)
                      .values_list("content_hash", flat=True))
    prints = fingerprints.recalled(namespace.pk, ids)
    if not hashes and not prints:
        return held
    # (text, the erased fingerprints it quotes or None: it is a whole erased text,
    #  the memory a grip quotes or None: a summary part)
    suspects: list[tuple[str, set[str] | None, str | None]] = []
    for text, quoted in _timeline_texts(namespace):
        if content_hash(text, namespace) in hashes:
            suspects.append((text, None, quoted))
        elif prints and (hit := fingerprints.of(text) & prints):
            suspects.append((text, hit, quoted))
    if suspects:
        held += _unexplained(namespace, suspects)
    return held


def _timeline_texts(namespace: Namespace) -> Iterator[tuple[str, str | None]]:
    """Every summary part (with None) and grip excerpt (with its memory's id) of the
    namespace's timeline."""
    # Through instances, not values_list: an encrypted namespace's texts open there.
    for node in RollupNode.objects.filter(namespace=namespace).only(
            "pk", "namespace_id", "parts").iterator(chunk_size=500):
        for part in node.parts or []:
            yield part, None
    for grip in Grip.objects.filter(node__namespace=namespace).select_related("node").only(
            "pk", "node__namespace_id", "memory_id", "excerpt").iterator(chunk_size=2000):
        yield grip.excerpt, str(grip.memory_id)


def _unexplained(namespace: Namespace,
                 suspects: Sequence[tuple[str, set[str] | None, str | None]]) -> int:
    """How many suspect parts and excerpts no remaining memory of the namespace explains
    (summaries aside: they are derived from the timeline, the very text being checked).

    A remaining memory explains a text the timeline can cut from it, whatever an erased
    memory also said (``_cut_from``): the rebuilt nodes quote the remaining memories'
    sentences as the summariser splits them (apps/core/summarizer_extractive.py
    ``split_units``), and such a sentence can be an erased memory's whole text, or an
    erased sentence the fingerprints' own splitter does not split out of the remaining
    memory (after a closing quote, an ellipsis, a CJK full stop). A text merely contained
    in a memory is not explained ("hunter2" in "hunter22"): the summariser cannot cut it.
    Otherwise a part or excerpt quoting fingerprints is explained when every one of them
    is also a remaining memory's; a whole erased text never is. Reads every such memory's
    content: done only when a part or an excerpt matched at all; splits a memory only
    when a suspect's text occurs in it."""
    from apps.core.summarizer_extractive import split_units

    left = list(suspects)
    wanted = set().union(*(hit for _, hit, _ in left if hit))
    found: set[str] = set()
    contents = sealing.texts(  # the erased rows are deleted by now
        Memory.objects.filter(namespace=namespace).exclude(kind=MemoryKind.SUMMARY))
    for pk, content in contents:
        if wanted - found:
            found |= fingerprints.of(content) & wanted
        units: set[str] | None = None  # this memory's, split when first needed
        still = []
        for suspect in left:
            text, hit, quoted = suspect
            if hit is not None and not hit - found:
                continue
            if quoted in (None, str(pk)) and text.removesuffix(ELLIPSIS) in content:
                if units is None:
                    units = {content[start:end] for start, end in split_units(content)}
                if _cut_from(text, units, shortened=quoted is None):
                    continue
            still.append(suspect)
        left = still
        if not left:
            break
    return len(left)


def _cut_from(text: str, units: Collection[str], *, shortened: bool) -> bool:
    """Whether ``text`` is what the timeline cuts from a memory split into ``units``: one
    of them whole (a part, as the extractive summariser picks it; a grip's excerpt, as
    ``grips.evidence`` keeps it); or, when ``shortened`` (a part: apps/core/summarizer.py
    ``shorten``, applied when a unit exceeds a level's ``max_chars``), the start of one cut
    at a space, with an ellipsis in place of the rest."""
    if text in units:
        return True
    head = text.removesuffix(ELLIPSIS)
    if not shortened or head == text or not head or head[-1].isspace():
        return False
    return any(len(unit) > len(head) and unit[len(head)].isspace() and unit.startswith(head)
               for unit in units)


ROLLUPS = stores.Store(
    "rollups", "timeline rollups (nodes, grips, sources)",
    "timeline_rollupnode, timeline_grip, timeline_rollupsource: each period's summary (its "
    "text is also a summary memory, a store of its own as every memory is), the grips "
    "quoting source memories, and the ids each segment was built from. Erasure empties "
    "every node built from or quoting (by grip) an erased memory, or a kept survivor whose "
    "merged text it takes back, in its transaction and rebuilds it without the erased "
    "memory after the commit (or removes it); the check looks for erased "
    "ids in grips, sources and summary memories, for an erased memory's whole text in any "
    "summary part or excerpt, and, during the erasure only, for any of its sentences or "
    "8-word runs (or a merged text's taken back) that no remaining memory holds.",
    stores.ErasedBy.ERASURE, models=(RollupNode, Grip, RollupSource), count=count,
    remaining=remaining, erase=erase, touched=touched)


def register_stores() -> None:
    """Called by ``TimelineConfig.ready``."""
    stores.register(ROLLUPS)
