"""Consolidations too large to answer within a request, run as jobs (docs/lifecycle.md,
"Large consolidations run as jobs").

A REST consolidation whose filters match up to ``MEMORYWEB_CONSOLIDATE_INLINE_MAX``
memories is answered within its request, as before. Above that, :func:`consolidate_or_queue`
records a :class:`ConsolidationRun` and queues it for huey's worker: the client gets 202 and
the run to poll (``GET /api/v1/consolidations/{id}``), with its progress (stage, done,
total) and, once done, the same outcome the request would have answered. One run at a time
per namespace (the database's constraint decides under concurrency: 409).

A run's lease is renewed by a heartbeat thread while it works; a run whose worker died (a
stale heartbeat) or whose task was lost is taken up again by the minute's sweep
(:func:`resume_stalled`), from the start: a dry run only reads, and an applied run's merges
already made are no longer candidates. A run taken up ``MAX_ATTEMPTS`` times is failed.

The result keeps ids, similarities, counts and a survivor's tags, never a memory's text:
the merged text is read from the survivor when the run is shown (a dry run asked for the
summarizer's merged texts writes them again from the members then). The memories it names are
rows of :class:`ConsolidationRunMember`, a store in the registry: erasing a memory removes
its rows and every proposal or conflict naming it from the stored results (a run finishing
while an erasure runs leaves out what the erasure took).

The run acts as who asked, as they are when it runs: the key (still active) or the person,
with their roles then; a key revoked since, or a role lost, fails the run (checked before
it reads and again before it merges).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core.errors import Conflict, NotFound, PermissionDenied, ServiceError
from apps.core.roles import Action, Role
from apps.lifecycle import consolidation, merged_text
from apps.lifecycle.models import ConsolidationRun, ConsolidationRunMember
from apps.lifecycle.representation import outcome_row
from apps.memories import sealing, stores
from apps.memories.models import Memory
from apps.ops.jobs import Heartbeat, stale_before
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize

log = logging.getLogger(__name__)
State = ConsolidationRun.State
#: Progress is written at most this often (seconds), and at every change of stage.
PROGRESS_EVERY = 1.0
#: Times a run is taken up (its worker died each time) before it is given up as failed.
MAX_ATTEMPTS = 3


def _naming(ids: Sequence[Any]) -> Any:
    return ConsolidationRunMember.objects.filter(memory_id__in=[str(i) for i in ids])


def _erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """Forget erased memories in the runs' results: their rows, and every proposal or
    conflict that names one (what is left of a group is not a proposal anyone made). The
    runs' rows are locked: two erasures at once must not write back each other's result."""
    erased = {str(i) for i in ids}
    naming = _naming(ids)
    for run in ConsolidationRun.objects.select_for_update().filter(
            pk__in=list(naming.values_list("run_id", flat=True))):
        if run.result:
            run.result = forget(run.result, erased)
            run.save(update_fields=["result"])
    naming.delete()


def _remaining(namespace: Namespace | None, erased: stores.Erased) -> int:
    """Rows naming an erased memory, plus stored results that still name one (read
    whole: a result written without its rows would otherwise go unseen)."""
    wanted = {str(i) for i in erased.ids}
    results = ConsolidationRun.objects.filter(result__isnull=False)
    if namespace is not None:
        results = results.filter(namespace=namespace)
    return _naming(erased.ids).count() + sum(
        1 for result in results.values_list("result", flat=True).iterator()
        if wanted & named(result))


#: The runs' results, in the registry of stores (apps/memories/stores.py).
RUN_RESULTS = stores.Store(
    "consolidation_runs", "consolidation job results",
    "lifecycle_consolidationrun(member): the memories a consolidation job's result names "
    "(proposals and conflicts: ids, similarities and a survivor's tags, never a memory's "
    "text). Erasure removes every proposal or conflict naming an erased memory from the "
    "stored results, and their rows; the check reads the results themselves too.",
    stores.ErasedBy.ERASURE, models=(ConsolidationRunMember,),
    count=lambda namespace, ids=None: _naming(ids).count() if ids is not None else
    ConsolidationRunMember.objects.filter(run__namespace=namespace).count(),
    remaining=_remaining, erase=_erase)


def register_stores() -> None:
    """Called by ``LifecycleConfig.ready``: lifecycle sits above memories."""
    stores.register(RUN_RESULTS)


def forget(result: dict[str, Any], erased: set[str]) -> dict[str, Any]:
    """``result`` without the proposals and conflicts that name an ``erased`` id."""
    kept = dict(result)
    for name in ("proposals", "conflicts"):
        kept[name] = [row for row in result.get(name) or []
                      if not erased.intersection(row.get("members") or ())]
    return kept


# --- asking --------------------------------------------------------------------------------

def consolidate_or_queue(principal: Principal, namespace: str | None, data: Any, *,
                         limit: int | None, inline_max: int | None = None
                         ) -> consolidation.Outcome | ConsolidationRun:
    """The REST entry: the outcome when at most ``inline_max`` memories match
    (``MEMORYWEB_CONSOLIDATE_INLINE_MAX``; ``limit`` then caps it as for every door that
    answers at once), else the queued run, with no cap (like ``manage.py consolidate`` and
    the scheduled job: a job holds no request). Everything a request could be refused for
    is refused here, before anything is queued."""
    request = consolidation.prepare(principal, namespace, data)
    ns, dry_run = request.namespace, request.dry_run
    inline_max = settings.MEMORYWEB_CONSOLIDATE_INLINE_MAX if inline_max is None else inline_max
    count = request.candidates().count()
    if count <= inline_max:
        return consolidation.run(principal, request, limit=limit)
    role = principal.role_in(ns.pk)
    try:
        with transaction.atomic():
            run = ConsolidationRun.objects.create(
                namespace=ns, requested_by=principal.label, agent_id=principal.agent_id or "",
                role=int(role), key_id=principal.key_id, user_id=principal.user_id,
                request=_json(data), dry_run=dry_run, candidates=count, total=count)
            audit(principal, "memory.consolidate_queued", namespace=ns, record_ids=[run.pk],
                  summary={"dry_run": dry_run, "candidates": count})
    except IntegrityError as exc:  # consolidationrun_one_active
        active = ConsolidationRun.objects.filter(namespace=ns, state__in=ConsolidationRun.ACTIVE)
        raise Conflict(f"a consolidation of namespace {ns.slug!r} is already queued or running "
                       f"({', '.join(str(pk) for pk in active.values_list('pk', flat=True))}); "
                       "wait for it to finish.", field="namespace") from exc
    enqueue(run)
    return run


def _json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The request body as the run replays it (validated above; dates stay strings)."""
    return {key: data[key] for key in ("dry_run", "threshold", "filters", "merged_text")
            if key in data}


def enqueue(run: ConsolidationRun) -> None:
    """Run it in huey's worker (the in-process consumer when embedded), after the commit."""
    from apps.lifecycle.tasks import run_consolidation

    transaction.on_commit(lambda: run_consolidation(str(run.pk)))


# --- running -------------------------------------------------------------------------------


def _claim(run_id: Any) -> str | None:
    """Take the run up (queued, or running with a stale heartbeat): its lease token; ""
    when it was taken up :data:`MAX_ATTEMPTS` times already (its worker died each time)
    and is failed now instead; None when it is held or finished."""
    claimable = ConsolidationRun.objects.filter(pk=run_id).filter(
        Q(state=State.QUEUED) | Q(state=State.RUNNING, heartbeat_at__lt=stale_before()))
    if claimable.filter(attempts__gte=MAX_ATTEMPTS).update(
            state=State.FAILED, lease="", finished_at=timezone.now(),
            error=f"given up after {MAX_ATTEMPTS} attempts: its worker stopped each time."):
        log.error("consolidation run %s given up after %d attempts", run_id, MAX_ATTEMPTS)
        return ""
    token = uuid.uuid4().hex
    taken = claimable.update(
        state=State.RUNNING, lease=token, heartbeat_at=timezone.now(),
        started_at=timezone.now(), stage="", done=0, attempts=F("attempts") + 1)
    return token if taken else None


def requester(job: ConsolidationRun) -> Principal:
    """Who asked, as they are now: the key (still active) or the person (still active),
    with their roles today; refused unless they may still edit the namespace. A run
    without either (a system caller) acts with the role it was asked with."""
    if job.key_id is not None:
        key = ApiKey.objects.active().select_related("namespace").filter(pk=job.key_id).first()
        if key is None:
            raise PermissionDenied("the key that asked for this consolidation was revoked or "
                                   "has expired since.")
        actor = Principal.for_key(key)
    elif job.user_id is not None:
        user = get_user_model().objects.filter(pk=job.user_id, is_active=True).first()
        if user is None:
            raise PermissionDenied("the person who asked for this consolidation is no longer "
                                   "an active user.")
        actor = Principal.for_user(user)
    else:
        actor = Principal(label=job.requested_by, agent_id=job.agent_id, role=Role(job.role),
                          namespace_id=job.namespace_id)
    authorize(actor, job.namespace_id, Action.EDIT)
    return actor


def _progress(run_id: Any, token: str, recheck: Callable[[], object]
              ) -> Callable[[str, int, int], None]:
    """``consolidate``'s progress callback (``stage``, items just done, stage total),
    written to the run at most every :data:`PROGRESS_EVERY` seconds and at each stage;
    ``recheck()`` runs before the ``apply`` stage (who asked may still merge)."""
    seen = {"stage": "", "done": 0, "written": 0.0}

    def progress(stage: str, done: int, total: int) -> None:
        now = timezone.now().timestamp()
        changed = stage != seen["stage"]
        if changed and stage == "apply":
            recheck()
        seen["done"] = done if changed else seen["done"] + done
        seen["stage"] = stage
        if changed or now - seen["written"] >= PROGRESS_EVERY or seen["done"] >= total:
            seen["written"] = now
            ConsolidationRun.objects.filter(pk=run_id, lease=token).update(
                stage=stage, done=min(seen["done"], total), total=total,
                heartbeat_at=timezone.now())

    return progress


def run(run_id: Any) -> str | None:
    """Run a queued (or stalled) consolidation to its end; its final state, or None when
    another worker holds it or it is finished."""
    token = _claim(run_id)
    if not token:
        return State.FAILED if token == "" else None
    job = ConsolidationRun.objects.select_related("namespace").get(pk=run_id)
    heartbeat = Heartbeat(f"consolidation run {run_id}", lambda: ConsolidationRun.objects
                          .filter(pk=run_id, lease=token).update(heartbeat_at=timezone.now()))
    heartbeat.start()
    try:
        actor = requester(job)
        outcome = consolidation.consolidate(
            actor, job.namespace.slug, job.request,
            progress=_progress(run_id, token, lambda: requester(job)))
        result = stored_result(outcome)
        # No beat after the work: one landing after the commit below (which clears the
        # lease) would find no lease and report it lost.
        heartbeat.stop()
        with transaction.atomic():
            # The memories it names, locked: one erased meanwhile is left out (the
            # erasure found no row of this run to clean; it must find nothing after).
            ids = named(result)
            # in pk order, as every other lock of memory rows (consolidation._apply_group)
            present = {str(pk) for pk in Memory.objects.select_for_update().filter(
                pk__in=list(ids)).order_by("pk").values_list("pk", flat=True)}
            result = forget(result, ids - present)
            if not ConsolidationRun.objects.filter(pk=run_id, lease=token).update(
                    state=State.DONE, lease="", result=result, finished_at=timezone.now(),
                    error=""):
                return None  # taken over meanwhile: the new holder writes its own result
            ConsolidationRunMember.objects.bulk_create(
                [ConsolidationRunMember(run_id=run_id, memory_id=memory_id)
                 for memory_id in named(result)], ignore_conflicts=True)
    except Exception as exc:
        log.exception("consolidation run %s failed", run_id)
        ConsolidationRun.objects.filter(pk=run_id, lease=token).update(
            state=State.FAILED, lease="", error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now())
    finally:
        heartbeat.stop()
    return ConsolidationRun.objects.values_list("state", flat=True).get(pk=run_id)


def stored_result(outcome: consolidation.Outcome) -> dict[str, Any]:
    """The outcome as the request would answer it, without the merged text (read from the
    survivor when shown: see :func:`result_row`)."""
    row = outcome_row(outcome)
    for proposal in row["proposals"]:
        proposal.pop("merged_content", None)
    return row


def named(result: Mapping[str, Any]) -> set[str]:
    """Every memory id a result names."""
    return {member for name in ("proposals", "conflicts") for row in result.get(name) or []
            for member in row.get("members") or ()}


def resume_stalled() -> list[str]:
    """Queue again the runs nobody is working on (a dead worker, a lost task)."""
    stalled = ConsolidationRun.objects.filter(
        Q(state=State.RUNNING, heartbeat_at__lt=stale_before())
        | Q(state=State.QUEUED, created_at__lt=timezone.now() - timedelta(minutes=1)))
    ids = [str(pk) for pk in stalled.values_list("pk", flat=True)]
    from apps.lifecycle.tasks import run_consolidation

    for run_id in ids:
        log.warning("consolidation run %s: resumed (its worker stopped or its task was lost)",
                    run_id)
        run_consolidation(run_id)
    return ids


# --- reading -------------------------------------------------------------------------------

def get(principal: Principal, run_id: Any) -> ConsolidationRun:
    """A run of a namespace the principal administers; another tenant's is not found."""
    try:
        key = uuid.UUID(str(run_id))
    except ValueError as exc:
        raise NotFound("consolidation run not found.") from exc
    run = (ConsolidationRun.objects.for_principal(principal, Action.READ)
           .select_related("namespace").filter(pk=key).first())
    if run is None:
        raise NotFound("consolidation run not found.")
    authorize(principal, run.namespace_id, Action.EDIT)
    return run


def result_row(run: ConsolidationRun) -> dict[str, Any] | None:
    """The stored result with each proposal's merged text read from its survivor now (a
    proposal whose survivor is gone is left out)."""
    if run.result is None:
        return None
    result = dict(run.result)
    proposals = result.get("proposals") or []
    wanted = {p["survivor"] for p in proposals}
    summary = run.dry_run and result.get("merged_text") == merged_text.SUMMARY
    if summary:  # a dry run's merged texts are written again from the members now
        wanted |= {m for p in proposals for m in p.get("members") or ()}
    texts = {str(pk): content for pk, content in sealing.texts(
        Memory.objects.in_namespace_checked(run.namespace_id).filter(pk__in=list(wanted)).order_by())}
    proposals = [p for p in proposals if p["survivor"] in texts and (
        not summary or all(m in texts for m in p.get("members") or ()))]
    merged = dict(texts)
    if summary and settings.MEMORYWEB_SUMMARIZER != "extractive":
        # A remote model is not asked again on every read of a large run: shown on apply.
        result["merged_text_error"] = ("the summarizer's merged texts of a queued dry run "
                                       "are written again on reading only by the offline "
                                       "summarizer; these are the survivors' own texts.")
    elif summary:
        try:
            merged.update(merged_text.summaries(
                [(p["survivor"], p["members"]) for p in proposals], texts)[1])
        except ServiceError as exc:
            result["merged_text_error"] = exc.message
        except Exception as exc:  # a misconfigured summarizer: the run is still shown
            log.exception("consolidation run %s: merged texts not written", run.pk)
            result["merged_text_error"] = f"the summarizer failed ({type(exc).__name__})."
    result["proposals"] = [{**p, "merged_content": merged[p["survivor"]]} for p in proposals]
    return result


def run_row(run: ConsolidationRun) -> dict[str, Any]:
    """A run as every door shows it."""
    return {"id": str(run.pk), "namespace": run.namespace.slug, "dry_run": run.dry_run,
            "state": run.state, "candidates": run.candidates,
            "progress": {"stage": run.stage, "done": run.done, "total": run.total},
            "created_at": run.created_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "error": run.error or None,
            "result": result_row(run)}
