"""An erasure request's whole story on its dashboard page (issue 17, items 1 and 4):
requested, decided, executed, certified, each step with who (and their role), when,
why, and the audit entry that records it; and the certificate's summary card.

Everything is read from the request row, its certificate and the audit log, scoped to
what the viewer may see (``AuditEntry.objects.for_principal``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.core.confirm import plural
from apps.core.roles import Action, Role
from apps.privacy import four_eyes
from apps.privacy.certificates import store_labels
from apps.privacy.models import ErasureRequest, ErasureState
from apps.tenancy.members import memberships
from apps.tenancy.models import ApiKey
from apps.tenancy.principal import Principal

#: The certificate's ``counts`` in words, in the order the card lists them.
COUNT_LABELS = {
    "memories": "memories",
    "versions": "earlier versions",
    "tags": "tags",
    "keyword_rows": "keyword-index rows",
    "idempotency_records": "idempotency records",
}
_ROLE_WORDS = {Role.READER: "reader", Role.AGENT: "agent", Role.ADMIN: "team admin",
               Role.SYSTEM: "system admin"}


def role_of(label: str, namespace_id: int | None) -> str:
    """Who a principal label is, by role: ``team admin (dana)``, ``system admin (root)``,
    ``API key with the team admin role (mw_live_ab12…)``, ``background job (retention)``.

    Roles are as they are now (the request records labels, not roles)."""
    kind, _, name = label.partition(":")
    if kind == "user":
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: name}).first()
        if user is None:
            return f"former user ({name})"
        if user.is_superuser:
            return f"system admin ({name})"
        role = memberships(user).get(namespace_id) if namespace_id is not None else None
        return f"{_ROLE_WORDS[role]} ({name})" if role else f"former member ({name})"
    if kind == "key":
        key = ApiKey.objects.filter(prefix=name).first()
        if key is None:
            return f"API key ({name}…)"
        return f"API key with the {_ROLE_WORDS[key.role_enum]} role ({name}…)"
    if kind == "system":
        return f"server job or command ({name})"
    return label


def related_entries(principal: Principal, request: ErasureRequest) -> QuerySet[AuditEntry]:
    """The audit entries about the request: its request, decision and execution (they
    name it), the erasure of its memories and exports made from it (their summaries
    name it). Oldest first; only entries the viewer may see."""
    pk = str(request.pk)
    return (AuditEntry.objects.for_principal(principal, Action.MANAGE)
            .filter(Q(records__record_id=pk) | Q(summary__erasure_request=pk))
            .distinct().order_by("seq"))


@dataclass
class Step:
    title: str
    #: done | pending | refused (rejected) | failed (execution stopped)
    status: str
    who: str = ""
    when: Any = None
    lines: list[str] = field(default_factory=list)
    entries: list[AuditEntry] = field(default_factory=list)


def story(request: ErasureRequest, entries: list[AuditEntry]) -> list[Step]:
    """Requested → decided → executed → certified, as far as the request has come."""
    ns = request.namespace_id
    by_operation: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_operation.setdefault(entry.operation, []).append(entry)
    steps = [Step("Requested", "done", role_of(request.requested_by, ns), request.requested_at,
                  [f"Reason: {request.reason}" if request.reason else "No reason given."],
                  by_operation.get("erasure.request", []))]
    if request.state == ErasureState.REQUESTED:
        steps.append(Step("Decision", "pending", lines=[
            "Waiting for a team admin or a system admin to approve or reject it"
            + (" (four-eyes: not the requester)." if four_eyes.enabled() else ".")]))
    elif request.state == ErasureState.REJECTED:
        steps.append(Step("Rejected", "refused", role_of(request.decided_by, ns),
                          request.decided_at, [f"Reason: {request.rejection_reason}"],
                          by_operation.get("erasure.reject", [])))
    else:
        steps.append(Step("Approved", "done", role_of(request.decided_by, ns),
                          request.decided_at, [], by_operation.get("erasure.approve", [])))
    erased = by_operation.get("memory.erase", [])
    if request.state == ErasureState.EXECUTED:
        erased_count = plural(len(request.erased), "memory", "memories")
        steps.append(Step("Executed", "done", role_of(request.executed_by, ns),
                          request.executed_at, [f"{erased_count} erased from every store."],
                          erased))
        steps.append(Step("Certified", "done", when=request.executed_at, lines=[
            f"Certificate SHA-256 {request.certificate_sha256}"],
            entries=by_operation.get("erasure.execute", [])))
    elif request.state == ErasureState.EXECUTING:
        steps.append(Step("Executing", "failed", role_of(request.executed_by, ns), lines=[
            "Deleted from the database; a store check or the vector index has not finished. "
            "A system admin executes it again to finish.",
            *([f"Last error: {request.last_error}"] if request.last_error else [])],
            entries=erased))
    elif request.state == ErasureState.APPROVED:
        steps.append(Step("Execution", "pending", lines=["A system admin executes it."]))
    exports = by_operation.get("export", [])
    if exports:  # made from the request's page, before it was executed
        steps.insert(2, Step("Exported before erasing", "done", role_of(exports[-1].actor, ns),
                             exports[-1].created_at,
                             [f"The matching memories were exported "
                              f"{plural(len(exports), 'time', 'times')}."], exports))
    return steps


def certificate_card(certificate: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary card shows: counts per store, each store's check, the audit entry."""
    counts = certificate.get("counts") or {}
    verification = certificate.get("verification") or {}
    anchor = certificate.get("audit") or {}
    labels = store_labels()
    return {
        "counts": [(COUNT_LABELS.get(name) or labels.get(name, name), counts[name])
                   for name in [*COUNT_LABELS, *sorted(set(counts) - set(COUNT_LABELS))]
                   if name in counts],
        "checks": [(labels.get(name, name), found.get("remaining"), bool(found.get("ok")))
                   for name, found in verification.items()],
        "all_checked": bool(verification) and all(found.get("ok")
                                                  for found in verification.values()),
        "retained": len(certificate.get("retained") or []),
        "audit_seq": anchor.get("seq"),
        "audit_url": reverse("admin:audit_auditentry_change", args=[anchor["seq"]])
        if anchor.get("seq") is not None else None,
        "sha256": certificate.get("certificate_sha256", ""),
    }
