"""Per-request traces of what the gateway injected (issue 22, item 6; docs/gateway.md,
"Traces").

Opt-in per namespace (its ``gateway.trace`` setting, apps/gateway/namespace_setting.py):

- ``off`` (the default): nothing is written, ever;
- ``metadata``: one :class:`~apps.gateway.models.GatewayTrace` row per proxied request —
  the route, the model's name, the mode in force, how many memories were injected and
  which (ids), how many were screened out, the fail-open reason, the gateway's own added
  latency and the upstream's status. No text;
- ``content``: the same and the recall query (the latest user turn(s) the gateway
  searched with), **redacted** with the capture hooks' patterns
  (``memoryweb_capture.redact``) before it is written.

The row is written on a pool thread after the answer went to the client
(apps/gateway/http.py), so a trace never delays the answer; a failure to write one is
logged and counted, never the client's. Traces are kept ``MEMORYWEB_GATEWAY_TRACE_DAYS``
days (default 7): older rows are dropped as new ones are written (at most once a minute
per process; the dashboard's list also leaves them out), so retention needs no job.

The table is a registered store (``gateway_traces``): namespace erasure, ``stats`` and
the certificate checks reach it. An erasure removes the traces naming an erased memory and
every trace of the agents whose memories it erased (a ``content`` trace holds what that
agent's user typed): more is erased, never less.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from apps.memories import stores
from apps.memories.models import Memory
from apps.tenancy.models import Namespace
from memoryweb_capture.redact import redact

from .models import GatewayTrace
from .namespace_setting import trace_level

log = logging.getLogger("memoryweb.gateway.traces")

#: Levels that write a row, and the one that also keeps the query.
RECORDED = ("metadata", "content")
CONTENT = "content"
#: The longest query kept (characters, after redaction); the gateway's query is at most
#: 2,000 characters already (apps/gateway/injection.py).
QUERY_MAX = 2000
#: Seconds between two prunes of old traces in one process.
PRUNE_EVERY = 60.0


@dataclass(frozen=True)
class Trace:
    """What one request did with memory (built on the loop from the response headers the
    gateway sent; written by :func:`record` on a pool thread)."""

    namespace: Namespace
    level: str
    api: str
    model: str
    mode: str
    agent_id: str = ""
    injected: int = 0
    memory_ids: tuple[str, ...] = ()
    screened_out: int = 0
    fail_open: str = ""
    added_ms: float = 0.0
    upstream_status: int | None = None
    query: str = field(default="", repr=False)


def level_of(namespace: Namespace | None) -> str:
    """The namespace's trace level (``off`` without a namespace: the models route)."""
    return trace_level(namespace) if namespace is not None else "off"


def retention() -> timedelta:
    return timedelta(days=settings.MEMORYWEB_GATEWAY_TRACE_DAYS)


def cutoff() -> datetime:
    """Traces created before this are past retention."""
    return timezone.now() - retention()


def record(trace: Trace) -> GatewayTrace | None:
    """Write the trace when its namespace asked for one (never at ``off``); the query only
    at ``content``, redacted. Runs on a pool thread, after the answer was sent."""
    if trace.level not in RECORDED:
        return None
    query = redact(trace.query or "")[:QUERY_MAX] if trace.level == CONTENT else ""
    close_old_connections()
    try:
        row = GatewayTrace.objects.create(
            namespace=trace.namespace, level=trace.level, api=trace.api,
            model=(trace.model or "")[:200], mode=trace.mode, agent_id=trace.agent_id[:128],
            injected=trace.injected, memory_ids=list(trace.memory_ids),
            screened_out=trace.screened_out, fail_open=trace.fail_open[:16],
            added_ms=round(trace.added_ms, 3), upstream_status=trace.upstream_status,
            query=query)
        prune_now_and_then()
    finally:
        close_old_connections()
    return row


_pruned_at = 0.0
_prune_lock = threading.Lock()


def prune_now_and_then() -> int:
    """Drop traces past retention, at most once every ``PRUNE_EVERY`` seconds per process."""
    global _pruned_at
    with _prune_lock:
        if time.monotonic() - _pruned_at < PRUNE_EVERY:
            return 0
        _pruned_at = time.monotonic()
    return prune()


def prune() -> int:
    """Drop every trace past retention; returns how many."""
    deleted, _ = GatewayTrace.objects.filter(created_at__lt=cutoff()).delete()
    return deleted


# --- the store ------------------------------------------------------------------------------

def _naming(namespace: Namespace, ids: Sequence[Any]) -> list[int]:
    """Traces of the namespace that name any of ``ids`` (JSON lists: read in Python; the
    table holds a few days of requests)."""
    wanted = {str(i) for i in ids}
    return [pk for pk, named in GatewayTrace.objects.filter(namespace=namespace)
            .exclude(injected=0).values_list("pk", "memory_ids").iterator(chunk_size=2000)
            if wanted.intersection(named or ())]


def _agents(namespace: Namespace, ids: Sequence[Any]) -> set[str]:
    agents: set[str] = set()
    for part in stores.chunks([str(i) for i in ids]):
        agents |= set(Memory.objects.in_namespace_checked(namespace).filter(pk__in=part)
                      .order_by().values_list("agent_id", flat=True))
    return agents


def count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    if ids is None:
        return GatewayTrace.objects.filter(namespace=namespace).count()
    return len(_naming(namespace, ids))


def erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    doomed = set(_naming(namespace, ids))
    agents = _agents(namespace, ids)
    if agents:
        doomed |= set(GatewayTrace.objects.filter(namespace=namespace, agent_id__in=agents)
                      .values_list("pk", flat=True))
    for part in stores.chunks(sorted(doomed)):
        GatewayTrace.objects.filter(pk__in=part).delete()


def remaining(namespace: Namespace | None, erased: stores.Erased) -> int | None:
    if namespace is None:
        return None  # its rows went with it
    return len(_naming(namespace, erased.ids))


def export(namespace: Namespace, selection: Any) -> Iterator[dict[str, Any]]:
    """The namespace's traces (``selection`` None), or a subject's: its agent's, and those
    that injected one of its memories."""
    query = GatewayTrace.objects.filter(namespace=namespace)
    if selection is not None:
        from .learning_stores import subject_filter

        naming = _naming(namespace, [str(pk) for pk in selection.memories().values_list(
            "pk", flat=True).iterator(chunk_size=2000)])
        field, _ = selection.subject
        own = subject_filter(selection) if field == "agent_id" else Q(pk__in=[])
        query = query.filter(Q(pk__in=sorted(naming)) | own)
    for trace in query.order_by("created_at", "id").iterator(chunk_size=500):
        yield {"id": trace.pk, "created_at": trace.created_at.isoformat(), "level": trace.level,
               "api": trace.api, "model": trace.model, "mode": trace.mode,
               "agent_id": trace.agent_id, "injected": trace.injected,
               "memory_ids": trace.memory_ids, "screened_out": trace.screened_out,
               "fail_open": trace.fail_open, "added_ms": trace.added_ms,
               "upstream_status": trace.upstream_status, "query": trace.query}


STORE = stores.Store(
    "gateway_traces", "gateway request traces",
    "gateway_gatewaytrace: per-request traces of namespaces that opted in (gateway.trace): "
    "the ids of the memories injected, counts, mode, timings and, at level content, the "
    "recall query (redacted). Kept MEMORYWEB_GATEWAY_TRACE_DAYS days. Erasure removes the "
    "traces naming an erased memory and those of the erased memories' agents (or of the "
    "agent an erasure names).",
    stores.ErasedBy.ERASURE, models=(GatewayTrace,), count=count, remaining=remaining,
    erase=erase, export=export, **stores.subject_columns(GatewayTrace, "created_at", ("agent_id",)))

#: What a namespace merge does with them (apps/memories/write_moves.py's MOVE_HANDLING).
MOVE_HANDLING = ("kept with the source namespace (diagnostics of its requests; they go "
                 "with it or age out)")


def register_store() -> None:
    """Called by ``GatewayConfig.ready`` (the gateway sits above memories)."""
    from apps.memories import write_moves

    stores.register(STORE)
    write_moves.MOVE_HANDLING.setdefault(STORE.name, MOVE_HANDLING)
