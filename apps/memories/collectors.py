"""memories' scrape-time Prometheus series, registered by MemoriesConfig.ready through
apps.ops.metrics.register_collector (ops defines the metrics machinery and sits below
memories, so it cannot read memories' tables itself)."""

from __future__ import annotations

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.memories.models import IndexOutbox
from apps.ops.metrics import register_collector


class OutboxCollector(Collector):
    """The vector-index outbox backlog, read from the database at scrape time (every
    process reports the same shared number; the gauge is not summed across processes)."""

    def describe(self):
        """The series' name without a query (called at registration)."""
        yield GaugeMetricFamily("memoryweb_outbox_backlog",
                                "Vector-index operations waiting in the outbox.")

    def collect(self):
        backlog = GaugeMetricFamily("memoryweb_outbox_backlog",
                                    "Vector-index operations waiting in the outbox.")
        try:
            backlog.add_metric([], IndexOutbox.objects.count())
        except DatabaseError:  # the database is down: /readiness says so; no number here
            return
        yield backlog


def register_collectors() -> None:
    """Once per process (MemoriesConfig.ready)."""
    register_collector("memories.outbox", OutboxCollector)
