"""``GET /proxy/v1/debug/stats``: seed 003's proxy statistics, on MemoryWeb's tenancy.

memoryOSS answers its process's counters to any authenticated caller. Here a server holds
many tenants, and the process's counters (``/metrics``) mix them all, so:

* any key of a namespace (reader, agent, team admin) gets **its namespace's** numbers,
  read from SQL: the memory mode in force for that key, what learning holds (quarantined,
  promoted and rejected facts; exchanges queued and failed), and, when the namespace keeps
  request traces (``gateway.trace``), the last 24 hours of them (requests, injected
  memories, fail-opens by reason, the gateway's added time);
* a **system-admin** key also gets the process's counters (the ``memoryweb_gateway_*``
  series of ``/metrics``, every tenant together), and names a namespace with
  ``X-Memory-Namespace`` to see that namespace's numbers.

No text, no memory ids, no other tenant's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.db.models import Avg, Count, Sum
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.core.errors import ServiceError
from apps.memories import memory_modes
from apps.tenancy.models import Namespace
from apps.tenancy.services import resolve_namespace

from .memory import NAMESPACE_HEADER, Admission
from .models import FactState, GatewayTrace, LearnedFact, PendingExchange
from .namespace_setting import trace_level

#: The window of traces summarised.
TRACE_WINDOW = timedelta(hours=24)
_PREFIX = "memoryweb_gateway_"


def stats(admission: Admission, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for an admitted request (``admit(..., with_memory=False)``).
    Runs on a pool thread (SQL)."""
    close_old_connections()
    try:
        principal = admission.principal
        named = headers.get(NAMESPACE_HEADER) or None
        body: dict[str, Any] = {"namespace": None}
        if principal.is_system_admin:
            body["process"] = process_counters()
            if not named:
                return 200, body
        try:
            namespace = resolve_namespace(principal, named)
        except ServiceError as exc:
            return exc.status, {"error": {"type": "not_found_error" if exc.status == 404
                                          else "invalid_request_error", "message": exc.message}}
        body.update(namespace_stats(namespace, principal))
        return 200, body
    finally:
        close_old_connections()


def namespace_stats(namespace: Namespace, principal: Any) -> dict[str, Any]:
    """What the gateway did and holds in ``namespace``."""
    decision = memory_modes.decide(principal, namespace, {})
    facts = dict(LearnedFact.objects.filter(namespace=namespace).values_list("state")
                 .annotate(n=Count("id")).values_list("state", "n"))
    pending = PendingExchange.objects.filter(namespace=namespace)
    body: dict[str, Any] = {
        "namespace": namespace.slug,
        "memory_mode": {"mode": decision.mode, "recall": decision.recall,
                        "store": decision.store,
                        "client_control": bool((namespace.memory_mode or {}).get(
                            "allow_client_control", True))},
        "learning": {"quarantined": facts.get(FactState.QUARANTINED, 0),
                     "promoted": facts.get(FactState.PROMOTED, 0),
                     "rejected": facts.get(FactState.REJECTED, 0),
                     "exchanges_queued": pending.filter(failed=False).count(),
                     "exchanges_failed": pending.filter(failed=True).count()},
    }
    level = trace_level(namespace)
    body["traces"] = {"level": level}
    if level != "off":
        since = timezone.now() - TRACE_WINDOW
        recent = GatewayTrace.objects.filter(namespace=namespace, created_at__gte=since)
        totals = recent.aggregate(requests=Count("id"), injected=Sum("injected"),
                                  screened_out=Sum("screened_out"), added_ms=Avg("added_ms"))
        fail_open = dict(recent.exclude(fail_open="").values_list("fail_open")
                         .annotate(n=Count("id")).values_list("fail_open", "n"))
        body["traces"].update({
            "window_hours": int(TRACE_WINDOW.total_seconds() // 3600),
            "requests": totals["requests"] or 0, "injected": totals["injected"] or 0,
            "screened_out": totals["screened_out"] or 0, "fail_open": fail_open,
            "added_ms_mean": round(totals["added_ms"], 2) if totals["added_ms"] else None})
    return body


def process_counters() -> dict[str, Any]:
    """The ``memoryweb_gateway_*`` counters of this process (every tenant together), as
    ``{"series": {"labels": value}}``; histograms as their count and sum."""
    found: dict[str, Any] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith(_PREFIX):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name.endswith("_bucket"):
                continue
            name = sample.name[len(_PREFIX):]
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) or "all"
            found.setdefault(name, {})[labels] = sample.value
    return found
