"""Erasure: a reviewed request, an execution that reaches every copy, and a certificate.

A team admin (of the namespace) or a system admin requests the erasure of a subject's
memories; a team admin or system admin approves or rejects it; executing it erases the
memories from every store in the registry (apps/memories/stores.py: SQL rows, versions,
tags, other systems' ids, keyword index rows, idempotency records and admin log rows
that name them, Chroma by id, the outbox), then asks every store again and issues a
certificate: who asked, who approved, the selector, counts,
the content hashes of what was erased (never the content), what the erasure rebuilt
around them (``touched``: the timeline's nodes, by id), each store's check, and a
SHA-256 over all of it that is also written into the audit chain.

An erasure by ``agent_id`` or ``session_id`` also takes the rows the stores hold about
that agent or session apart from any memory (``Store.subject_erase``: the facts its key
taught the gateway, still in quarantine), and checks them; such rows alone are enough to
erase. A rejection gives its reason; a selector that matches nothing is refused when the
request is made. With four-eyes on (``MEMORYWEB_ERASURE_FOUR_EYES``, apps/privacy/four_eyes.py)
the approver is another identity than the requester, and one-call erasure is off.

Execution is restartable: the ids and hashes are saved (state ``executing``) before
anything is deleted, so if the vector index is down the request stays ``executing``
and a retry finishes the job and the checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, validate
from apps.memories import stores, writes
from apps.memories.models import Memory
from apps.privacy import four_eyes, ledger
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.selectors import SUBJECT_FIELDS, Selector, SelectorInput, select
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize

log = logging.getLogger(__name__)
FORMAT = "memoryweb-deletion-certificate/1"


class ErasureInput(SelectorInput):
    openapi_one_of_required = SUBJECT_FIELDS  # the schema: a request names its subject
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="Why (e.g. the data subject's request reference).")
    execute = serializers.BooleanField(default=False, help_text="System admins: approve and "
                                       "execute at once; the response carries the certificate.")


class RejectInput(StrictSerializer):
    reason = serializers.CharField(
        max_length=500, help_text="Why not (kept with the request, shown to the requester).",
        error_messages={"required": "a rejection needs a reason.",
                        "blank": "a rejection needs a reason."})


# --- requests ---------------------------------------------------------------------------

def create(principal: Principal, data: Mapping[str, Any]) -> ErasureRequest:
    """Record a request for one subject of a namespace (team admin or system admin)."""
    cleaned = validate(ErasureInput, dict(data))
    execute_now = cleaned.pop("execute")
    reason = cleaned.pop("reason", "")
    selector = select(principal, cleaned, need_subject=True)
    if execute_now and not principal.is_system_admin:
        raise PermissionDenied("only a system admin may execute an erasure at once; "
                               "request it and have it approved.")
    if execute_now and four_eyes.enabled() and not four_eyes.is_job(principal.label):
        raise PermissionDenied("four-eyes is on (MEMORYWEB_ERASURE_FOUR_EYES): an erasure is "
                               "requested, approved by someone else, then executed; it cannot "
                               "be done in one call.")
    if not selector.memories().exists() and not selector.other_rows():
        field, value = selector.subject
        named = field if field == "ids" else f"{field} {value!r}"
        # The selection is within a namespace the caller manages: another tenant's ids
        # get the very answer ids nobody holds get.
        raise InvalidInput(f"{named} matches nothing you can see in namespace "
                           f"{selector.namespace.slug!r}; there is nothing to erase.", field=field)
    with transaction.atomic():
        request = ErasureRequest.objects.create(
            namespace=selector.namespace, namespace_slug=selector.namespace.slug,
            selector=selector.describe(), reason=reason, requested_by=principal.label)
        audit(principal, "erasure.request", namespace=selector.namespace, record_ids=[request.pk],
              summary={"selector": ledger.for_audit(selector.namespace, request.selector)})
    if execute_now:
        approve(principal, request.pk)
        return execute(principal, request.pk)
    return request


def visible(principal: Principal) -> QuerySet[ErasureRequest]:
    """Requests the principal may see: its managed namespaces' (system admins: all)."""
    if not principal.is_system_admin and not principal.namespace_ids(Action.MANAGE):
        raise PermissionDenied("erasure requests are for team admins and system admins.")
    return ErasureRequest.objects.for_principal(principal, Action.MANAGE)


def get(principal: Principal, request_id: Any) -> ErasureRequest:
    """One request: 404 unless it belongs to a namespace the principal can see (a deleted
    namespace's: system admins only), 403 below team admin."""
    try:
        request = ErasureRequest.objects.get(pk=uuid.UUID(str(request_id)))
    except (ValueError, ErasureRequest.DoesNotExist):
        raise NotFound("erasure request not found.") from None
    if principal.is_system_admin:
        return request
    if request.namespace_id is None or principal.role_in(request.namespace_id) is None:
        raise NotFound("erasure request not found.")
    authorize(principal, request.namespace_id, Action.MANAGE)
    return request


def _decide(principal: Principal, request_id: Any, to: ErasureState, **fields: Any
            ) -> ErasureRequest:
    with transaction.atomic():
        request = get(principal, request_id)
        request = ErasureRequest.objects.select_for_update().get(pk=request.pk)
        if request.namespace_id is not None:
            authorize(principal, request.namespace_id, Action.MANAGE)
        if request.state != ErasureState.REQUESTED:
            raise Conflict(f"the request is {request.state}; only a requested one can be "
                           f"{to.value}.", field="state")
        if to == ErasureState.APPROVED and not may_approve(principal, request):
            raise PermissionDenied(
                f"four-eyes (MEMORYWEB_ERASURE_FOUR_EYES): {request.requested_by} asked for this "
                "erasure, and its approver must be someone else (a key counts as whoever created "
                "it); another team admin or a system admin approves it, or reject it to withdraw.")
        request.state, request.decided_by, request.decided_at = to, principal.label, timezone.now()
        for name, value in fields.items():
            setattr(request, name, value)
        request.save(update_fields=["state", "decided_by", "decided_at", *fields])
        audit(principal, f"erasure.{'approve' if to == ErasureState.APPROVED else 'reject'}",
              namespace=request.namespace, record_ids=[request.pk],
              summary={"selector": ledger.for_audit(request.namespace, request.selector)})
    return request


def may_approve(principal: Principal, request: ErasureRequest) -> bool:
    """The four-eyes rule (apps/privacy/four_eyes.py): with it on, nobody approves what
    they asked for themselves, under another label either; jobs are exempt."""
    if not four_eyes.enabled() or four_eyes.is_job(request.requested_by):
        return True
    return not four_eyes.same_identity(principal.label, request.requested_by)


def approve(principal: Principal, request_id: Any) -> ErasureRequest:
    return _decide(principal, request_id, ErasureState.APPROVED)


def reject(principal: Principal, request_id: Any, data: Mapping[str, Any] | None = None
           ) -> ErasureRequest:
    if data is not None and not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    reason = validate(RejectInput, dict(data or {}))["reason"]  # a rejection says why
    return _decide(principal, request_id, ErasureState.REJECTED, rejection_reason=reason)


# --- execution --------------------------------------------------------------------------

def execute(principal: Principal, request_id: Any) -> ErasureRequest:
    """Erase what an approved request selects, check every store, issue the certificate.

    An ``executing`` request (an earlier attempt stopped) is finished, not restarted.
    System admins only (DESIGN.md's role table): a team admin requests and approves.
    """
    request = get(principal, request_id)
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may execute an erasure; team admins "
                               "request and approve it.")
    if request.state not in (ErasureState.APPROVED, ErasureState.EXECUTING):
        raise Conflict(f"the request is {request.state}; it must be approved first.",
                       field="state")
    namespace = request.namespace
    if namespace is None:
        raise Conflict("the namespace was deleted, and everything in it with it.",
                       field="namespace")
    if request.state == ErasureState.APPROVED:
        _delete(principal, request.pk, namespace)
        request.refresh_from_db()
    else:  # a retry: the rows are gone; the stores' own steps are repeated (idempotent)
        _erase_again(request.pk, namespace)
    _finish(request, namespace)
    checks = verify_stores(namespace, request.erased, _retained_ids(request.certificate),
                           touched=(request.certificate or {}).get("touched"),
                           subject=_subject(request.selector),
                           before=_subject_through(request.certificate))
    if not all(check["ok"] for check in checks.values()):
        request.last_error = f"verification failed: {json.dumps(checks)}"
        request.save(update_fields=["last_error"])
        raise Unavailable("erasure ran but a store still holds erased data; retry execute. "
                          f"Checks: {json.dumps(checks)}")
    _certify(principal, request, namespace, checks)
    _checkpoint_wal()
    return request


def _delete(principal: Principal, request_id: Any, namespace: Namespace) -> None:
    """Record what is erased (ids, content hashes, counts; state ``executing``) and delete
    it, all in one transaction that holds the request's row: a concurrent execute waits,
    then finds it ``executing`` and only finishes. The selection runs in the same
    transaction, so a memory stored meanwhile cannot slip past the certificate.

    Every registered store (apps/memories/stores.py) is reached by the write path's
    ``writes.erase``: first those an ordinary delete leaves (idempotency records, the admin
    log), then the memory delete (SQL rows and their cascade, keyword rows, outbox, Chroma
    inline, audited), then the finishing steps of the stores it reached (the keyword index
    is merged). Stores erased after the commit (Chroma) are ``_finish``'s: its failing
    does not fail this.

    Memories outside the selector that hold identical content (another subject's record
    of the same words) are kept, and listed as ``retained`` in the certificate.
    """
    with transaction.atomic():
        request = ErasureRequest.objects.select_for_update().get(pk=request_id)
        if request.state != ErasureState.APPROVED:
            return  # another execution got here first
        selector = Selector(namespace, _subject(request.selector))
        rows = list(selector.memories().values_list("pk", "content_hash"))
        ids = [pk for pk, _ in rows]
        retained = list(Memory.objects.filter(namespace=namespace, content_hash__in={
            digest for _, digest in rows}).exclude(pk__in=ids).values_list("pk", "content_hash"))
        counts = {store.certificate_count: store.count(namespace, ids)
                  for store in stores.stores() if store.certificate_count and store.count}
        # Rows about the subject that name no memory (what its key taught the gateway),
        # made up to now: what the same key sends later is new data, not this erasure's.
        through = timezone.now()
        counts.update(writes.erase_subject(namespace, *selector.subject, before=through))
        touched = {store.name: found for store in stores.stores()
                   if store.touched and (found := store.touched(namespace, ids))}
        request.erased = [{"id": str(pk), "content_sha256": digest} for pk, digest in rows]
        request.state, request.executed_by = ErasureState.EXECUTING, principal.label
        request.certificate = {"counts": counts, "retained": [  # completed by _certify
            {"id": str(pk), "content_sha256": digest} for pk, digest in retained],
            **({"touched": touched} if touched else {}),
            **({"subject_rows_through": through.isoformat()}
               if selector.subject[0] in stores.SUBJECT_ROW_FIELDS else {})}
        request.save(update_fields=["erased", "state", "executed_by", "certificate"])

        def entry(namespace: Namespace, ids: Sequence[Any], removed: int) -> None:
            audit(principal, "memory.erase", namespace=namespace, record_ids=ids,
                  summary={"erasure_request": str(request.pk), "count": removed})

        writes.erase(namespace, ids, actor=principal, audit=entry)


def _erase_again(request_id: Any, namespace: Namespace) -> None:
    """A retried execute: repeat the in-transaction steps of the stores (not the delete
    path: the rows are gone), so "retry execute" also clears a store that still held
    erased data when the checks ran."""
    with transaction.atomic():
        request = ErasureRequest.objects.select_for_update().get(pk=request_id)
        if request.state != ErasureState.EXECUTING:
            return  # a concurrent execute certified it meanwhile
        writes.erase_again(namespace, [item["id"] for item in request.erased])
        through = _subject_through(request.certificate)
        if through is not None:
            writes.erase_subject(namespace, *_subject(request.selector), before=through)


def _finish(request: ErasureRequest, namespace: Namespace) -> None:
    """Erase the ids from the stores outside the transaction (Chroma, then the outbox rows
    recording that work), again: idempotent, so a retried execute repeats it."""
    try:
        writes.erase_after_commit(namespace, [item["id"] for item in request.erased])
    except writes.EraseFailed as failed:
        store, exc = failed.store, failed.__cause__
        request.last_error = f"{store.label}: {type(exc).__name__}: {exc}"[:2000]
        request.save(update_fields=["last_error"])
        raise Unavailable(f"the {store.label} is unavailable; the erasure is recorded and "
                          "will finish when execute is retried.") from exc


def verify_stores(namespace: Namespace | None, erased: Sequence[Mapping[str, str]],
                  retained: Sequence[str] = (), subject: tuple[str, Any] | None = None,
                  before: Any = None, touched: Mapping[str, Any] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Ask every registered store whether it still holds any erased id or content hash
    (``retained``: the memories outside the selector that held identical content when it
    ran; ``touched``: the certificate's, what it changed around them, which a store's
    check may be scoped to). A deleted namespace's stores that went with it are not asked.

    ``subject`` (at execution only): also the rows the stores hold about that agent or
    session apart from memories (``Store.subject_count``), made up to ``before`` (when the
    erasure ran). A later verification does not ask it: the same agent may have taught
    the gateway again since, which is new data."""
    done = stores.Erased(ids=tuple(item["id"] for item in erased),
                         hashes=tuple(item["content_sha256"] for item in erased),
                         retained=tuple(retained),
                         touched=touched if isinstance(touched, Mapping) else {})
    about = (stores.subject_rows(namespace, *subject, before=before)
             if namespace is not None and subject is not None else {})
    checks = {}
    for store in stores.stores():
        if store.remaining is None and store.name not in about:
            continue
        try:
            held = store.remaining(namespace, done) if store.remaining else None
        except Exception as exc:
            if not store.external:
                raise
            raise Unavailable(f"the {store.label} is unavailable; cannot check it.") from exc
        if held is not None or store.name in about:
            held = (held or 0) + about.get(store.name, 0)
            checks[store.name] = {"remaining": held, "ok": held == 0}
    return checks


def _retained_ids(certificate: Mapping[str, Any] | None) -> list[str]:
    return [item["id"] for item in (certificate or {}).get("retained", [])]


def _certify(principal: Principal, request: ErasureRequest, namespace: Namespace,
             checks: dict[str, dict[str, Any]]) -> None:
    now = timezone.now()
    body = {
        "format": FORMAT, "request": str(request.pk),
        "namespace": {"slug": namespace.slug, "id": namespace.pk},
        "selector": request.selector, "reason": request.reason,
        "requested_by": request.requested_by, "requested_at": request.requested_at.isoformat(),
        "approved_by": request.decided_by, "approved_at": request.decided_at.isoformat(),
        "executed_by": request.executed_by or principal.label, "executed_at": now.isoformat(),
        "counts": (request.certificate or {}).get("counts", {}),
        "erased": request.erased, "retained": (request.certificate or {}).get("retained", []),
        "verification": checks,
    }
    touched = (request.certificate or {}).get("touched")
    if touched:  # what the erasure rebuilt around the memories (rollup nodes): ids only
        body["touched"] = touched
    through = (request.certificate or {}).get("subject_rows_through")
    if through:  # the rows about the agent or session apart from memories, made up to then
        body["subject_rows_through"] = through
    digest = certificate_hash(body)
    with transaction.atomic():
        current = ErasureRequest.objects.select_for_update().get(pk=request.pk)
        if current.state == ErasureState.EXECUTED:  # a concurrent execute certified it
            request.refresh_from_db()
            return
        entry = audit(principal, "erasure.execute", namespace=namespace, record_ids=[request.pk],
                      summary={"certificate_sha256": digest, "memories": len(request.erased)})
        # Before the commit: a ledger that cannot be written leaves the request
        # ``executing`` (503, retry execute), never certified without its line.
        ledger.record_erasure(request, body, digest, entry)
        request.certificate = {**body, "certificate_sha256": digest,
                               "audit": {"seq": entry.seq, "entry_hash": entry.entry_hash}}
        request.certificate_sha256 = digest
        request.state, request.executed_at, request.last_error = ErasureState.EXECUTED, now, ""
        request.save()


def certificate_hash(certificate: Mapping[str, Any]) -> str:
    """SHA-256 over the certificate's canonical JSON, without the hash and audit fields."""
    body = {k: v for k, v in certificate.items() if k not in ("certificate_sha256", "audit")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=True).encode()).hexdigest()


def _subject_through(certificate: Mapping[str, Any] | None) -> Any:
    """When an erasure by agent or session took the stores' rows about it (their cutoff)."""
    found = (certificate or {}).get("subject_rows_through")
    return datetime.fromisoformat(found) if found else None


def _subject(selector: Mapping[str, Any]) -> tuple[str, Any]:
    field = next(name for name in SUBJECT_FIELDS if name in selector)
    return field, selector[field]


def _checkpoint_wal() -> None:
    """SQLite: fold the WAL into the database file and truncate it, so erased rows'
    old page images do not linger there (best effort: busy readers can defer it)."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception as exc:  # the erasure itself is done and certified
        log.warning("WAL checkpoint after erasure deferred: %s", exc)


def forget_certified(principal: Principal, data: Mapping[str, Any]) -> ErasureRequest:
    """Seed 003's one-call certified deletion (system admins): request, approve, execute."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may erase in one call; team admins "
                               "request an erasure and approve it.")
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    return create(principal, {**data, "execute": True})


#: Privacy's own memory-derived data, in the registry of stores (apps/memories/stores.py).
ERASURE_RECORDS = stores.Store(
    "erasure_records", "erasure requests and certificates",
    "privacy_erasurerequest: the selector, the states and the certificate: each erased "
    "memory's id and content SHA-256.", stores.ErasedBy.KEPT, models=(ErasureRequest,),
    kept_because="the evidence of the erasure itself: ids and content hashes, never content "
    "(docs/privacy.md, Limits: a hash confirms a guessed exact text).")


def register_stores() -> None:
    """Called by ``PrivacyConfig.ready``: privacy sits above memories, so it registers its
    store itself."""
    stores.register(ERASURE_RECORDS)
