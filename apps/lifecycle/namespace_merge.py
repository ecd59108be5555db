"""Namespace merge: move every memory of one namespace into another (system admin), with
lineage, dedup on the way, audit, the source archived; resumable, and reversible.

Memories are re-homed **in place** (``Write.move``): ids, versions, links and audit
references stay, and no copy of the personal data is left in the source. The run:

1. **Start** (:func:`start`, one transaction): the source is archived (it refuses writes
   from now on), its API keys are revoked and every live grant to or from it is revoked
   (each audited as a revoke is); a :class:`NamespaceMerge` row records the decision,
   with the source's members (left on the archived source, for the target's admins to
   invite) and the target's members and grantees (who now see the moved memories). The
   source's timeline is dropped (the target builds its own from the moved memories).
2. **Batches** of ``MEMORYWEB_NAMESPACE_MERGE_BATCH`` memories in id order, each one
   transaction with the merge's progress: the stored vectors are read first (nothing is
   re-embedded), the memories move, a memory whose content the target already holds
   live is superseded by that memory (``derived_from``, similarity 1.0; reversible like
   a consolidation's merge), a :class:`NamespaceMergeItem` keeps what the revert needs,
   and one ``namespace.merge_batch`` audit entry names the ids. A worker that dies
   mid-batch leaves nothing half done; the minute's sweep resumes after the last
   committed batch (a lease on the row keeps it to one worker).
3. **End**: the source's keyword table is dropped with its freed pages zeroed and its
   vector collection dropped with its files (the moved text survives nowhere in the
   source, where no later erasure would look); ``namespace.merged`` is audited.

:func:`revert` moves the items back (the same path the other way), releases what the
dedup superseded, restores the seed 000 numbers the move left behind and unarchives the
source. Revoked keys and grants stay revoked: re-issuing access is a decision for people.

**Encrypted namespaces** (docs/encryption.md): each moved memory is re-sealed for the
namespace it lands in (``Write.move``), and its dedup against the target compares the
target's keyed hash. An encrypted source into a plain target is refused (409): it would
store the source's memories in clear. The source keeps its data key (its archived rows,
its erasure requests and a revert need it) until the source namespace is deleted, which
shreds it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core import namespace_keys
from apps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from apps.core.roles import Role
from apps.core.validation import StrictBooleanField, StrictSerializer, TextField, validate
from apps.lifecycle.models import NamespaceMerge, NamespaceMergeItem, WeakMemory
from apps.memories import lexical, sealing, stores, track_record, writes
from apps.memories.models import AgentRecord, ExternalId, Memory, content_hash
from apps.memories.vectorstore import get_vector_store
from apps.ops.jobs import stale_before
from apps.privacy.models import ErasureRequest, ErasureState
from apps.tenancy import grants as tenancy_grants
from apps.tenancy import keys as tenancy_keys
from apps.tenancy.members import members
from apps.tenancy.models import ApiKey, Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import resolve_namespace
from apps.timeline.erasure import forget_tree

log = logging.getLogger(__name__)
State = NamespaceMerge.State

def _items_naming(ids) -> Any:
    return NamespaceMergeItem.objects.filter(memory_id__in=[str(i) for i in ids])


#: The merges' record of moved memories, in the registry of stores (apps/memories/stores.py).
MERGE_RECORDS = stores.Store(
    "namespace_merges", "namespace merge records",
    "lifecycle_namespacemergeitem: each moved memory's id, the target's memory it duplicated "
    "and the ids from other systems it left behind (seed 000 numbers, imported ids). "
    "Erasure removes the records of erased memories (a revert has nothing to move back for "
    "them, and their other systems' ids must not outlive them).",
    stores.ErasedBy.ERASURE, models=(NamespaceMergeItem,),
    count=lambda namespace, ids=None: _items_naming(ids).count() if ids is not None else
    NamespaceMergeItem.objects.filter(merge__target=namespace).count(),
    remaining=lambda namespace, erased: _items_naming(erased.ids).count(),
    erase=lambda namespace, ids: _items_naming(ids).delete())


def register_stores() -> None:
    """Called by ``LifecycleConfig.ready``: lifecycle sits above memories."""
    stores.register(MERGE_RECORDS)


# --- planning and starting ---------------------------------------------------------------

class MergeInput(StrictSerializer):
    target = TextField(max_length=64, help_text="The slug of the namespace that receives the "
                       "memories.")
    dry_run = StrictBooleanField(required=False, help_text="Only report what the merge would "
                                 "do (default false).")


def merge_into(principal: Principal, source: str, data: Any, *,
               inline_max: int | None = None) -> tuple[NamespaceMerge | None, dict[str, Any]]:
    """The REST and drop-in entry: a dry run's report (``None, report``), or the merge
    started and, up to ``inline_max`` memories (MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX), run
    to its end here; above, queued as a job (its state says which)."""
    _require_system(principal)
    cleaned = validate(MergeInput, data)
    if cleaned.get("dry_run"):
        return None, plan(principal, source, cleaned["target"])
    merge = start(principal, source, cleaned["target"])
    limit = settings.MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX if inline_max is None else inline_max
    if merge.total <= limit:
        run(merge.pk)
    else:
        enqueue(merge)
    merge.refresh_from_db()
    return merge, status(merge)


def _require_system(principal: Principal) -> None:
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may merge namespaces.")


def _pair(principal: Principal, source: str, target: Any, *, check: bool = True
          ) -> tuple[Namespace, Namespace]:
    _require_system(principal)
    if not isinstance(target, str) or not target:
        raise InvalidInput("target: the slug of the namespace to merge into is required.",
                           field="target")
    src = resolve_namespace(principal, source)
    dst = resolve_namespace(principal, target)
    if src.pk == dst.pk:
        raise InvalidInput("a namespace cannot be merged into itself.", field="target")
    if check:
        _check_free(src, dst)
    return src, dst


def _check_free(src: Namespace, dst: Namespace) -> None:
    """409 unless both namespaces are writable, in no unfinished merge, and the source has
    no erasure request in flight (executed after the move, it would erase nothing there
    and certify it, while the memories live on in the target), and unless an encrypted
    source would land in a plain target (its memories stored in clear). An encrypted
    namespace's key must open (503 otherwise, before anything changes)."""
    if _encrypted(src) and not _encrypted(dst):
        raise Conflict(f"target {dst.slug!r} is not encrypted: merging would store the memories "
                       f"of {src.slug!r} (encrypted) in clear; encrypt the target first with "
                       f"manage.py encrypt_namespace {dst.slug}.", field="target")
    for namespace in (src, dst):
        if _encrypted(namespace):
            namespace_keys.data_key(namespace.pk)  # KeyUnavailable: 503, nothing changed
    if dst.archived_at is not None:
        raise Conflict(f"namespace {dst.slug!r} is archived: unarchive it to merge into it.",
                       field="target")
    if src.archived_at is not None:
        raise Conflict(f"namespace {src.slug!r} is archived (merged already?): unarchive it "
                       "first.", field="namespace")
    busy = NamespaceMerge.objects.exclude(state__in=[State.DONE, State.REVERTED]).filter(
        Q(source__in=[src, dst]) | Q(target__in=[src, dst])).first()
    if busy is not None:
        raise Conflict(f"merge {busy.pk} of these namespaces is not finished ({busy.state}): "
                       "resume or revert it first.", field="namespace")
    pending = ErasureRequest.objects.filter(namespace=src, state__in=[
        ErasureState.REQUESTED, ErasureState.APPROVED, ErasureState.EXECUTING]).count()
    if pending:
        raise Conflict(f"namespace {src.slug!r} has {pending} erasure request(s) not executed "
                       "or rejected yet: finish them before merging it.", field="namespace")


def _encrypted(namespace: Namespace) -> bool:
    return sealing.namespace_encrypted(namespace.pk, namespace)


def _live_grants(namespace: Namespace) -> list[SharingGrant]:
    return list(SharingGrant.objects.live().filter(Q(grantor=namespace) | Q(grantee=namespace))
                .select_related("grantor", "grantee").order_by("pk"))


def plan(principal: Principal, source: str, target: Any) -> dict[str, Any]:
    """What a merge would do, changing nothing (a dry run); ``refused`` says why it would
    be refused now (409 for the real thing), else null."""
    src, dst = _pair(principal, source, target, check=False)
    try:
        _check_free(src, dst)
    except Conflict as exc:
        refused: str | None = exc.message
    else:
        refused = None
    return _report(src, dst) | {"dry_run": True, "refused": refused}


def _duplicate_count(src: Namespace, dst: Namespace) -> int:
    """How many of the source's memories the target holds live (the same content)."""
    mine = Memory.objects.filter(namespace=src)
    live = Memory.objects.live().current().filter(namespace=dst)
    if not (_encrypted(src) or _encrypted(dst)):  # one plain hash: SQL compares them
        found = live.filter(content_hash__in=mine.values_list("content_hash", flat=True))
        return mine.filter(content_hash__in=list(found.values_list("content_hash", flat=True))
                           ).count()
    # Keyed per namespace: the target's hash of each source text, computed here.
    digests = [content_hash(text, dst) for _, text in sealing.texts(mine)]
    held: set[str] = set()
    for at in range(0, len(digests), 500):
        held.update(live.filter(content_hash__in=digests[at:at + 500]).values_list(
            "content_hash", flat=True))
    return sum(digest in held for digest in digests)


def _report(src: Namespace, dst: Namespace) -> dict[str, Any]:
    return {
        "source": src.slug, "target": dst.slug,
        "memories": Memory.objects.filter(namespace=src).count(),
        "duplicates": _duplicate_count(src, dst),
        "keys_revoked": [str(pk) for pk in ApiKey.objects.filter(
            namespace=src, revoked_at__isnull=True).values_list("pk", flat=True)],
        "grants_revoked": [grant.pk for grant in _live_grants(src)],
        "source_members": sorted(members(src)),
        "target_members": sorted(members(dst)),
        "target_grantees": sorted({g.grantee.slug for g in SharingGrant.objects.live().filter(
            grantor=dst).select_related("grantee")}),
    }


def start(principal: Principal, source: str, target: Any) -> NamespaceMerge:
    """Archive the source, revoke its keys and grants, drop its timeline and record the
    merge (queued). The caller runs it (:func:`run`) inline or as a job (:func:`enqueue`)."""
    src, dst = _pair(principal, source, target)
    with transaction.atomic():
        # Both rows locked in one order, and the checks made again under the locks: two
        # merges of overlapping namespaces cannot both start.
        locked = {n.pk: n for n in Namespace.objects.select_for_update().filter(
            pk__in=[src.pk, dst.pk]).order_by("pk")}
        src, dst = locked[src.pk], locked[dst.pk]
        _check_free(src, dst)
        report = _report(src, dst)
        src.archived_at = timezone.now()
        src.save(update_fields=["archived_at"])
        for key in ApiKey.objects.filter(namespace=src, revoked_at__isnull=True):
            tenancy_keys.revoke_key(principal, src.slug, key.pk)
        for grant in _live_grants(src):
            tenancy_grants.revoke_grant(principal, grant.grantor.slug, grant.pk)
        _add_track_records(src, dst)
        merge = NamespaceMerge.objects.create(
            source=src, target=dst, requested_by=principal.label, report=report,
            total=report["memories"])
        audit(principal, "namespace.merge", namespace=src, record_ids=[merge.pk],
              summary={"into": dst.slug, "memories": report["memories"],
                       "keys_revoked": len(report["keys_revoked"]),
                       "grants_revoked": len(report["grants_revoked"])})
    forget_tree(src)
    WeakMemory.objects.filter(namespace=src).delete()  # the target reviews them anew
    # What is left to move (the timeline's summary memories went with its tree).
    NamespaceMerge.objects.filter(pk=merge.pk).update(
        total=Memory.objects.filter(namespace=src).count())
    merge.refresh_from_db()
    return merge


def _add_track_records(src: Namespace, dst: Namespace) -> None:
    """The source's agents' records join the target's (the moved memories keep their
    history): counts added per agent."""
    for record in AgentRecord.objects.filter(namespace=src):
        for field in track_record.FIELDS:
            track_record.add(dst.pk, {record.agent_id: getattr(record, field)}, field)


def enqueue(merge: NamespaceMerge) -> None:
    """Run the merge in huey's worker (the in-process consumer embedded)."""
    from apps.lifecycle.tasks import run_namespace_merge

    transaction.on_commit(lambda: run_namespace_merge(str(merge.pk)))


# --- running ------------------------------------------------------------------------------


def _claim(merge_id: Any) -> str | None:
    token = uuid.uuid4().hex
    taken = NamespaceMerge.objects.filter(
        pk=merge_id, state__in=[*NamespaceMerge.ACTIVE, State.FAILED]).filter(
        Q(lease="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale_before())
    ).update(state=State.RUNNING, lease=token, heartbeat_at=timezone.now())
    return token if taken else None


def run(merge_id: Any, *, progress=None) -> str | None:
    """Run a merge to its end from its last committed batch; its final state, or None when
    another worker holds it or it is finished. ``progress(n)`` after each batch."""
    token = _claim(merge_id)
    if token is None:
        return None
    try:
        while _step(merge_id, token, progress):
            pass
    except Exception as exc:
        log.exception("namespace merge %s: a batch failed", merge_id)
        # Failed, resumable: the minute's sweep tries again once the heartbeat is stale,
        # ``--resume`` at once; or it can be reverted.
        NamespaceMerge.objects.filter(pk=merge_id, lease=token).update(
            state=State.FAILED, lease="", error=f"{type(exc).__name__}: {exc}"[:2000],
            heartbeat_at=timezone.now())
    return NamespaceMerge.objects.values_list("state", flat=True).get(pk=merge_id)


def _step(merge_id: Any, token: str, progress) -> bool:
    """One batch with the merge's progress, in one transaction; whether more remains."""
    batch = settings.MEMORYWEB_NAMESPACE_MERGE_BATCH
    merge = NamespaceMerge.objects.select_related("source", "target").get(pk=merge_id)
    src, dst = merge.source, merge.target
    pending = Memory.objects.filter(namespace=src).order_by("pk")
    ids = [str(pk) for pk in pending.values_list("pk", flat=True)[:batch]]
    if not ids:
        _finish(merge, token)
        # A write that committed into the source meanwhile: moved by another step.
        return Memory.objects.filter(namespace=src).exists() and NamespaceMerge.objects.filter(
            pk=merge_id, lease=token).exists()
    stored = get_vector_store().embeddings(src, ids)
    actor = Principal(label=merge.requested_by, agent_id="", role=Role.SYSTEM)
    with writes.atomic() as write:
        merge = NamespaceMerge.objects.select_for_update().get(pk=merge_id)
        if merge.lease != token or merge.state != State.RUNNING:
            return False
        memories = list(Memory.objects.select_for_update().filter(namespace=src, pk__in=ids)
                        .order_by("pk"))
        vectors = (np.stack([stored[str(m.pk)] for m in memories])
                   if memories and all(str(m.pk) in stored for m in memories) else None)
        duplicates = _duplicates(dst, [m for m in memories if m.superseded_by_id is None],
                                 merge)
        dropped = write.move(src, dst, memories, vectors, duplicates=duplicates, actor=actor,
                             audit=lambda moved: audit(
                                 actor, "namespace.merge_batch", namespace=dst,
                                 record_ids=[m.pk for m in moved],
                                 summary={"from": src.slug, "merge": str(merge.pk),
                                          "duplicates": len(duplicates)}))
        NamespaceMergeItem.objects.bulk_create([
            NamespaceMergeItem(merge=merge, memory_id=m.pk,
                               duplicate_of=getattr(duplicates.get(str(m.pk)), "pk", None),
                               dropped_ids=dropped.get(str(m.pk), []))
            for m in memories])
        merge.moved += len(memories)
        merge.duplicates += len(duplicates)
        merge.cursor = str(memories[-1].pk) if memories else merge.cursor
        merge.heartbeat_at = timezone.now()
        merge.save(update_fields=["moved", "duplicates", "cursor", "heartbeat_at"])
    if progress:
        progress(len(memories))
    return True


def _duplicates(target: Namespace, memories: list[Memory], merge: NamespaceMerge
                ) -> dict[str, Memory]:
    """Moved memory id -> the target's own live, current memory with the same content (not
    one this merge moved there: copies within the source stay as they were). Compared by
    the target's hash of each text (keyed per namespace where one is encrypted)."""
    found: dict[str, Memory] = {}
    rehash = _encrypted(merge.source) or _encrypted(target)
    digests = {str(m.pk): content_hash(m.content, target) if rehash else m.content_hash
               for m in memories}
    moved = NamespaceMergeItem.objects.filter(merge=merge).values("memory_id")
    for memory in Memory.objects.live().current().filter(
            namespace=target, content_hash__in=list(digests.values())).exclude(
            pk__in=moved).order_by("created_at"):
        found.setdefault(memory.content_hash, memory)
    return {pk: found[digest] for pk, digest in digests.items() if digest in found}


def _finish(merge: NamespaceMerge, token: str) -> None:
    """The source is empty: its keyword table and vector collection go with their files."""
    src = merge.source
    if Memory.objects.filter(namespace=src).exists():
        return  # a write that passed the archive check just before it: the next step moves it
    with writes.secure_deletes():
        lexical.drop(src.pk)
    store = get_vector_store()
    store.drop_collection(store.collection_name(src))
    with transaction.atomic():
        if Memory.objects.filter(namespace=src).exists():
            return  # arrived while the files went: the next step moves it, then finishes
        done = NamespaceMerge.objects.filter(pk=merge.pk, lease=token, state=State.RUNNING).update(
            state=State.DONE, lease="", finished_at=timezone.now())
        if done:
            merge.refresh_from_db()
            audit(merge.requested_by, "namespace.merged", namespace=merge.target,
                  record_ids=[merge.pk], summary={"from": src.slug, "moved": merge.moved,
                                                  "duplicates": merge.duplicates})


def resume_stalled() -> list[str]:
    """Queue again the merges and reverts nobody is working on (a dead worker, a lost
    task)."""
    from apps.lifecycle.tasks import run_namespace_merge, run_namespace_merge_revert

    stalled = NamespaceMerge.objects.filter(
        Q(state__in=[State.RUNNING, State.FAILED, State.REVERTING],
          heartbeat_at__lt=stale_before())
        | Q(state=State.QUEUED, created_at__lt=timezone.now() - timedelta(minutes=1)))
    found = list(stalled.values_list("pk", "state"))
    for merge_id, state in found:
        log.warning("namespace merge %s: %s resumed (its worker stopped or its task was lost)",
                    merge_id, "its revert" if state == State.REVERTING else "it")
        (run_namespace_merge_revert if state == State.REVERTING
         else run_namespace_merge)(str(merge_id))
    return [str(pk) for pk, _ in found]


# --- reading and reverting ---------------------------------------------------------------

def get(principal: Principal, merge_id: Any) -> NamespaceMerge:
    _require_system(principal)
    try:
        key = uuid.UUID(str(merge_id))
    except ValueError as exc:
        raise NotFound("namespace merge not found.") from exc
    try:
        return NamespaceMerge.objects.select_related("source", "target").get(pk=key)
    except NamespaceMerge.DoesNotExist as exc:
        raise NotFound("namespace merge not found.") from exc


def listing(principal: Principal, state: str = "") -> Any:
    """Every namespace merge, newest first (system admin), of one ``state`` if given."""
    _require_system(principal)
    if state and state not in State.values:
        raise InvalidInput(f"state is one of {', '.join(State.values)}.", field="state")
    rows = NamespaceMerge.objects.select_related("source", "target").order_by("-created_at", "pk")
    return rows.filter(state=state) if state else rows


def revert(principal: Principal, merge_id: Any, *,
           inline_max: int | None = None) -> NamespaceMerge:
    """Move a merge's memories back into the (unarchived) source: a finished merge, or a
    failed one (what it had moved). Memories the target erased meanwhile stay erased, and
    memories edited there keep their edits. One revert at a time (a lease on the row).

    Up to ``inline_max`` moved memories (MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX, as for the
    merge itself) are moved back here; above, the merge turns ``reverting`` and huey's
    worker moves them (:func:`run_revert`; resumed by the minute's sweep if it stops)."""
    merge = get(principal, merge_id)
    if merge.state not in (State.DONE, State.FAILED):
        raise Conflict(f"only a finished or failed merge can be reverted (this one is "
                       f"{merge.state}).", field="state")
    dst = merge.target
    busy = NamespaceMerge.objects.exclude(pk=merge.pk).exclude(
        state__in=[State.DONE, State.REVERTED]).filter(Q(source=dst) | Q(target=dst)).first()
    if busy is not None:
        raise Conflict(f"merge {busy.pk} involving {dst.slug!r} is not finished.", field="state")
    limit = settings.MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX if inline_max is None else inline_max
    inline = merge.items.count() <= limit
    token = uuid.uuid4().hex
    if not NamespaceMerge.objects.filter(pk=merge.pk, state=merge.state, lease="").update(
            lease=token if inline else "", heartbeat_at=timezone.now(),
            reverted_by=principal.label, **({} if inline else {"state": State.REVERTING})):
        raise Conflict("this merge is being reverted or resumed.", field="state")
    if not inline:
        with transaction.atomic():
            audit(principal, "namespace.merge_revert_started", namespace=merge.source,
                  record_ids=[merge.pk], summary={"from": dst.slug,
                                                  "memories": merge.items.count()})
            _enqueue_revert(merge)
        merge.refresh_from_db()
        return merge
    _revert_holding(principal, merge, token)
    merge.refresh_from_db()
    return merge


def _revert_holding(principal: Principal, merge: NamespaceMerge, token: str) -> None:
    """Move back and finish, holding the row's lease ``token`` (released on a failure)."""
    src, dst = merge.source, merge.target
    try:
        moved_back = _move_back(principal, merge, src, dst, token)
    except BaseException:
        NamespaceMerge.objects.filter(pk=merge.pk, lease=token).update(lease="")
        raise
    with transaction.atomic():
        Namespace.objects.filter(pk=src.pk).update(archived_at=None)
        NamespaceMerge.objects.filter(pk=merge.pk).update(
            state=State.REVERTED, lease="", reverted_at=timezone.now(), error="",
            report={**merge.report, "moved_back": moved_back})
        audit(principal, "namespace.merge_revert", namespace=src, record_ids=[merge.pk],
              summary={"from": dst.slug, "memories": moved_back})


def _enqueue_revert(merge: NamespaceMerge) -> None:
    from apps.lifecycle.tasks import run_namespace_merge_revert

    transaction.on_commit(lambda: run_namespace_merge_revert(str(merge.pk)))


def run_revert(merge_id: Any) -> str | None:
    """A ``reverting`` merge moved back to its end (huey's worker); its final state, or
    None when another worker holds it. A failure leaves it ``reverting`` with its error,
    for the sweep to take up again once its heartbeat is stale."""
    token = uuid.uuid4().hex
    if not NamespaceMerge.objects.filter(pk=merge_id, state=State.REVERTING).filter(
            Q(lease="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale_before())
    ).update(lease=token, heartbeat_at=timezone.now()):
        return None
    merge = NamespaceMerge.objects.select_related("source", "target").get(pk=merge_id)
    actor = Principal(label=merge.reverted_by or "system:lifecycle", agent_id="",
                      role=Role.SYSTEM)
    try:
        _revert_holding(actor, merge, token)
    except Exception as exc:
        log.exception("namespace merge %s: its revert failed", merge_id)
        NamespaceMerge.objects.filter(pk=merge_id).update(
            error=f"{type(exc).__name__}: {exc}"[:2000], heartbeat_at=timezone.now())
    return NamespaceMerge.objects.values_list("state", flat=True).get(pk=merge_id)


def _move_back(principal: Principal, merge: NamespaceMerge, src: Namespace,
               dst: Namespace, token: str) -> int:
    """The recorded memories still in the target, back into the source; how many. Each
    batch renews the lease's heartbeat (a run that stops is taken up again)."""
    items = list(merge.items.order_by("memory_id"))
    together = {str(i.memory_id) for i in items}
    batch = settings.MEMORYWEB_NAMESPACE_MERGE_BATCH
    moved_back = 0
    for start_at in range(0, len(items), batch):
        part = items[start_at:start_at + batch]
        ids = [str(i.memory_id) for i in part]
        stored = get_vector_store().embeddings(dst, ids)
        with writes.atomic() as write:
            memories = list(Memory.objects.select_for_update().filter(
                namespace=dst, pk__in=ids).order_by("pk"))
            if not memories:
                continue
            # What the dedup superseded, and lineage made in the target meanwhile with
            # memories that stay there: released (lineage never crosses namespaces).
            if write.cut_ties(dst, [m.pk for m in memories], together):
                # released rows: read again (locked already) in one query, not one each
                memories = list(Memory.objects.filter(
                    pk__in=[m.pk for m in memories]).order_by("pk"))
            vectors = (np.stack([stored[str(m.pk)] for m in memories])
                       if all(str(m.pk) in stored for m in memories) else None)
            # Back where they were: re-sealed for the source, in clear if it is plain.
            write.move(dst, src, memories, vectors, duplicates={}, actor=principal,
                       into_clear=True,
                       audit=lambda moved: audit(principal, "namespace.merge_revert_batch",
                                                 namespace=src, record_ids=[m.pk for m in moved],
                                                 summary={"merge": str(merge.pk)}))
            _restore_ids(src, part)
            WeakMemory.objects.filter(memory_id__in=[m.pk for m in memories]).delete()
            moved_back += len(memories)
        NamespaceMerge.objects.filter(pk=merge.pk, lease=token).update(
            heartbeat_at=timezone.now())
    return moved_back


def _restore_ids(namespace: Namespace, items: list[NamespaceMergeItem]) -> None:
    """The ids a move left behind, back where the source still has them free."""
    rows = [ExternalId(namespace=namespace, system=system, external_id=value,
                       memory_id=item.memory_id)
            for item in items for system, value in item.dropped_ids]
    present = set(Memory.objects.filter(pk__in=[r.memory_id for r in rows]).values_list(
        "pk", flat=True))
    ExternalId.objects.bulk_create([r for r in rows if r.memory_id in present],
                                   ignore_conflicts=True)


def status(merge: NamespaceMerge) -> dict[str, Any]:
    """The merge as the REST routes answer it."""
    return {"id": str(merge.pk), "source": merge.source.slug, "target": merge.target.slug,
            "state": merge.state, "total": merge.total, "moved": merge.moved,
            "duplicates": merge.duplicates, "requested_by": merge.requested_by,
            "created_at": merge.created_at, "finished_at": merge.finished_at,
            "reverted_at": merge.reverted_at, "error": merge.error or None,
            "report": _public_report(merge.report)}


def _public_report(report: Mapping[str, Any]) -> dict[str, Any]:
    return {key: report.get(key) for key in (
        "keys_revoked", "grants_revoked", "source_members", "target_members", "target_grantees",
        "moved_back")}
