"""Erasure: a reviewed request, an execution that reaches every copy, and a certificate.

A team admin (of the namespace) or a system admin requests the erasure of a subject's
memories; a team admin or system admin approves or rejects it; executing it deletes the
memories from SQL (rows, versions, tags, keyword index rows, idempotency records that
name them), from Chroma (by id), and from the queues (outbox rows), then checks every
store again and issues a certificate: who asked, who approved, the selector, counts,
the content hashes of what was erased (never the content), each store's check, and a
SHA-256 over all of it that is also written into the audit chain.

A rejection gives its reason; a selector that matches nothing is refused when the request
is made. With four-eyes on (``MEMORYWEB_ERASURE_FOUR_EYES``, apps/privacy/four_eyes.py)
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
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from apps.memories import lexical
from apps.memories.models import (
    ExternalId,
    IdempotencyRecord,
    IndexOutbox,
    Memory,
    MemoryTag,
    MemoryVersion,
)
from apps.memories.schemas import StrictSerializer, validate
from apps.memories.services import _delete_memories
from apps.memories.vectorstore import get_vector_store
from apps.privacy import four_eyes
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.selectors import SUBJECT_FIELDS, Selector, SelectorInput, select
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.roles import Action
from apps.tenancy.services import authorize

log = logging.getLogger(__name__)
FORMAT = "memoryweb-deletion-certificate/1"
_CHUNK = 500


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
    if not selector.memories().exists():
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
              summary={"selector": request.selector})
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
              summary={"selector": request.selector})
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
    _finish_vectors(request, namespace)
    checks = verify_stores(namespace, request.erased, _retained_ids(request.certificate))
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
    it through the memory service's delete path (SQL rows, keyword rows, outbox, Chroma
    inline, audited), all in one transaction that holds the request's row: a concurrent
    execute waits, then finds it ``executing`` and only finishes. The selection runs in
    the same transaction, so a memory stored meanwhile cannot slip past the certificate.
    Chroma failing does not fail the delete: ``_finish_vectors`` retries it.

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
        counts = {"memories": len(ids), "versions": _count(MemoryVersion, "memory_id", ids),
                  "tags": _count(MemoryTag, "memory_id", ids),
                  "keyword_rows": lexical.held(namespace.pk, ids),
                  "idempotency_records": _forget_idempotency(namespace, {str(i) for i in ids})}
        request.erased = [{"id": str(pk), "content_sha256": digest} for pk, digest in rows]
        request.state, request.executed_by = ErasureState.EXECUTING, principal.label
        request.certificate = {"counts": counts, "retained": [  # completed by _certify
            {"id": str(pk), "content_sha256": digest} for pk, digest in retained]}
        request.save(update_fields=["erased", "state", "executed_by", "certificate"])
        if connection.vendor == "sqlite":  # zero freed pages instead of leaving content there
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA secure_delete = ON")
        try:
            if ids:
                _delete_memories(principal, {namespace.pk: ids}, "memory.erase",
                                 {"erasure_request": str(request.pk)})
                _forget_admin_log(ids)
        finally:
            if connection.vendor == "sqlite":
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA secure_delete = OFF")
        lexical.compact(namespace.pk)


def _finish_vectors(request: ErasureRequest, namespace: Namespace) -> None:
    """Delete the ids from Chroma (again: idempotent) and settle their outbox rows."""
    ids = [item["id"] for item in request.erased]
    try:
        for start in range(0, len(ids), _CHUNK):
            get_vector_store().delete(namespace, ids[start : start + _CHUNK])
    except Exception as exc:
        request.last_error = f"vector index: {type(exc).__name__}: {exc}"[:2000]
        request.save(update_fields=["last_error"])
        raise Unavailable("the vector index is unavailable; the erasure is recorded and "
                          "will finish when execute is retried.") from exc
    for start in range(0, len(ids), _CHUNK):
        IndexOutbox.objects.filter(namespace=namespace,
                                   memory_id__in=ids[start : start + _CHUNK]).delete()


def verify_stores(namespace: Namespace | None, erased: Sequence[Mapping[str, str]],
                  retained: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Ask every store whether it still holds any erased id or content hash (``retained``:
    the memories outside the selector that held identical content when it ran)."""
    ids = [item["id"] for item in erased]
    hashes = sorted({item["content_sha256"] for item in erased})
    if namespace is None:  # deleted namespace: its rows, table and collection went with it
        remaining = {"memories": _count(Memory, "pk", ids)}
    else:
        try:
            vectors = sum(len(get_vector_store().embeddings(namespace, ids[i : i + _CHUNK]))
                          for i in range(0, len(ids), _CHUNK))
        except Exception as exc:
            raise Unavailable("the vector index is unavailable; cannot check it.") from exc
        remaining = {
            "memories": _count(Memory, "pk", ids),
            "content_hashes": _count(Memory.objects.filter(namespace=namespace).exclude(
                pk__in=list(retained)), "content_hash", hashes),
            "versions": _count(MemoryVersion, "memory_id", ids),
            "tags": _count(MemoryTag, "memory_id", ids),
            "external_ids": _count(ExternalId, "memory_id", ids),
            "keyword_index": lexical.held(namespace.pk, ids),
            "vector_index": vectors,
            "outbox": _count(IndexOutbox, "memory_id", ids),
            "idempotency_records": len(_idempotency_naming(namespace, set(ids))),
        }
    return {store: {"remaining": n, "ok": n == 0} for store, n in remaining.items()}


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
    digest = certificate_hash(body)
    with transaction.atomic():
        current = ErasureRequest.objects.select_for_update().get(pk=request.pk)
        if current.state == ErasureState.EXECUTED:  # a concurrent execute certified it
            request.refresh_from_db()
            return
        entry = audit(principal, "erasure.execute", namespace=namespace, record_ids=[request.pk],
                      summary={"certificate_sha256": digest, "memories": len(request.erased)})
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


def _subject(selector: Mapping[str, Any]) -> tuple[str, Any]:
    field = next(name for name in SUBJECT_FIELDS if name in selector)
    return field, selector[field]


def _count(model_or_queryset, field: str, values: Sequence[Any]) -> int:
    queryset = getattr(model_or_queryset, "objects", model_or_queryset)
    values = list(values)
    return sum(queryset.filter(**{f"{field}__in": values[i : i + _CHUNK]}).count()
               for i in range(0, len(values), _CHUNK))


def _idempotency_naming(namespace: Namespace, ids: set[str]) -> list[int]:
    """The namespace's idempotency records that name any of these memory ids."""
    return [pk for pk, memory_ids in IdempotencyRecord.objects.filter(namespace=namespace)
            .values_list("pk", "memory_ids") if ids & set(memory_ids)]


def _forget_idempotency(namespace: Namespace, ids: set[str]) -> int:
    """Idempotency records naming erased memories go too (they hold the ids)."""
    doomed = _idempotency_naming(namespace, ids)
    IdempotencyRecord.objects.filter(pk__in=doomed).delete()
    return len(doomed)


def _forget_admin_log(ids: list) -> None:
    """Delete the Django admin's own log rows about these memories: their ``object_repr``
    held the first characters of content. (The dashboard no longer writes them for
    memories; rows from before that would outlive the erasure.)"""
    memory_type = ContentType.objects.get_for_model(Memory)
    names = [str(pk) for pk in ids]
    for start in range(0, len(names), 500):
        LogEntry.objects.filter(content_type=memory_type,
                                object_id__in=names[start : start + 500]).delete()


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
