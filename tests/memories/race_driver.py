"""Concurrent ingests through the service layer, run in its own process against the
database named by DATABASE_URL (test_ingest_races.py points it at a fresh PostgreSQL
database): many threads, each with its own connection, call ``services.ingest`` /
``ingest_many`` at the same moment, and the outcome is printed as one JSON document.

A separate process because the suite's own database is SQLite in the embedded run and
its test transactions would hide other threads' commits; here every thread commits for
real, as request threads of a server do. Run: ``python -m tests.memories.race_driver``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memoryweb.settings")

import django

from apps.core.conf import prepare_data_dir

prepare_data_dir()  # the data directory and its secret key, before setup
django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.db import connection  # noqa: E402

from apps.audit.models import AuditEntry  # noqa: E402
from apps.core.errors import ServiceError  # noqa: E402
from apps.core.roles import Role  # noqa: E402
from apps.live.events import namespace_group  # noqa: E402
from apps.memories import services  # noqa: E402
from apps.memories.models import IdempotencyRecord, IndexOutbox, Memory  # noqa: E402
from apps.memories.vectorstore import get_vector_store  # noqa: E402
from apps.tenancy.models import Namespace  # noqa: E402
from apps.tenancy.principal import Principal  # noqa: E402
from apps.tenancy.services import create_api_key, create_namespace  # noqa: E402

SENTINEL = "race-driver-sentinel"


def _race(count: int, call: Callable[[int], Any]) -> list[dict[str, Any]]:
    """Run ``call(i)`` on ``count`` threads released together; each thread's outcome."""
    barrier = threading.Barrier(count)
    outcomes: list[dict[str, Any]] = [{} for _ in range(count)]

    def run(i: int) -> None:
        try:
            barrier.wait()
            result = call(i)
            results = result if isinstance(result, list) else [result]
            outcomes[i] = {"ids": [str(r.memory.pk) for r in results],
                           "duplicate": [r.duplicate for r in results]}
        except ServiceError as exc:
            outcomes[i] = {"error": exc.code, "field": exc.field}
        except Exception as exc:  # anything else is a failure the test reports
            outcomes[i] = {"crash": f"{type(exc).__name__}: {exc}"}
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class Events:
    """The namespace's live events, read from the channel layer like a connection would;
    a sentinel sent after the race marks the end, so nothing is waited for by the clock."""

    def __init__(self, namespace: Namespace):
        self.layer = get_channel_layer()
        self.group = namespace_group(namespace.pk)
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(self.group, self.channel)

    def created_ids(self) -> list[str]:
        async_to_sync(self.layer.group_send)(self.group, {"type": SENTINEL})
        ids: list[str] = []
        while True:
            message = async_to_sync(self.layer.receive)(self.channel)
            if message["type"] == SENTINEL:
                return ids
            if message.get("event") == "created":
                ids += [item["id"] for item in message["memories"]]


def _scenario(slug: str, count: int, call: Callable[[Principal, int], Any]) -> dict[str, Any]:
    namespace = create_namespace(slug)
    key, _ = create_api_key(role=Role.AGENT, agent_id=f"{slug}-bot", namespace=namespace)
    principal = Principal.for_key(key)
    events = Events(namespace)
    outcomes = _race(count, lambda i: call(principal, i))
    audit = list(AuditEntry.objects.filter(namespace_id=namespace.pk, operation="memory.create")
                 .values_list("record_ids", flat=True))
    return {
        "outcomes": outcomes,
        "rows": sorted(str(pk) for pk in Memory.objects.filter(namespace=namespace)
                       .values_list("pk", flat=True)),
        "contents": sorted(Memory.objects.filter(namespace=namespace)
                           .values_list("content", flat=True)),
        "audit": audit,
        "idempotency_records": IdempotencyRecord.objects.filter(namespace=namespace).count(),
        "outbox": IndexOutbox.objects.filter(namespace=namespace).count(),
        "vectors": get_vector_store().count(namespace),
        "events": events.created_ids(),
    }


BATCH = [{"content": f"batch item {i}"} for i in range(5)]

SCENARIOS: dict[str, tuple[int, Callable[[Principal, int], Any]]] = {
    "same-content": (16, lambda p, i: services.ingest(p, {"content": "one fact, told 16 times"})),
    "key-different-bodies": (8, lambda p, i: services.ingest(
        p, {"content": f"body number {i}"}, idempotency_key="k-diff")),
    "key-same-body": (16, lambda p, i: services.ingest(
        p, {"content": "the same body"}, idempotency_key="k-same")),
    "batch-key": (8, lambda p, i: services.ingest_many(p, BATCH, idempotency_key="k-batch")),
    # Overlapping batches without a key, half of them in reverse order: every item is
    # stored once, and no two batches deadlock on each other's rows.
    "batch-overlap": (8, lambda p, i: services.ingest_many(p, BATCH if i % 2 else BATCH[::-1])),
}


def main() -> None:
    print(json.dumps({slug: _scenario(slug, count, call)
                      for slug, (count, call) in SCENARIOS.items()}))


if __name__ == "__main__":
    main()
