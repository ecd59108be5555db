"""MemoryWeb's own Prometheus series, next to django-prometheus' request, database and
cache series. Exposed at /metrics (apps/server/views.py) with a bearer token.

Labels are bounded: an operation name, a recall mode, an outcome, a job name, an index
operation — never a namespace, key, agent or memory (their number is unbounded and they
name tenants). The services record these (DESIGN.md: metrics happen once, in the service
layer); each process keeps its own registry, so scrape every server process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from apps.core.errors import ServiceError

#: Latency buckets for in-process work (seconds): 1 ms .. 10 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OPERATIONS = Counter(
    "memoryweb_operations_total",
    "Service operations by outcome: ok, refused (bad input, rights: 4xx), error.",
    ["operation", "outcome"])
OPERATION_SECONDS = Histogram(
    "memoryweb_operation_seconds", "Time spent in a service operation.", ["operation"],
    buckets=BUCKETS)
MEMORIES_STORED = Counter("memoryweb_memories_stored_total",
                          "Memories written by ingest (new rows, not duplicates).")
RECALLS = Counter("memoryweb_recalls_total", "Recalls answered, by mode.", ["mode"])
EMBED_SECONDS = Histogram("memoryweb_embedding_seconds", "Time to embed one batch of texts.",
                          buckets=BUCKETS)
EMBEDDED_TEXTS = Counter("memoryweb_embedded_texts_total", "Texts embedded.")
INDEX_ERRORS = Counter("memoryweb_index_errors_total",
                       "Vector-index writes that failed (left in the outbox to retry).", ["op"])
WEBSOCKET_CONNECTIONS = Gauge("memoryweb_websocket_connections", "Open live WebSocket connections.")
WEBSOCKET_SUBSCRIPTIONS = Gauge("memoryweb_websocket_subscriptions",
                                "Standing queries held by this process's connections.")
JOB_RUNS = Counter("memoryweb_job_runs_total", "Background job runs by outcome (ok, error, "
                   "skipped while paused).", ["job", "outcome"])
JOB_SECONDS = Histogram("memoryweb_job_seconds", "Background job run time.", ["job"],
                        buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 1800))


@contextmanager
def timed(operation: str) -> Iterator[None]:
    """Count an operation (ok or error) and time it."""
    started = time.perf_counter()
    try:
        yield
    except ServiceError as exc:  # the caller's mistake or rights (4xx), or a dependency (5xx)
        OPERATIONS.labels(operation, "refused" if exc.status < 500 else "error").inc()
        raise
    except BaseException:
        OPERATIONS.labels(operation, "error").inc()
        raise
    finally:
        OPERATION_SECONDS.labels(operation).observe(time.perf_counter() - started)
    OPERATIONS.labels(operation, "ok").inc()


def observed(operation: str):
    """Decorator form of ``timed`` for a service function."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with timed(operation):
                return function(*args, **kwargs)

        return wrapper

    return decorate


class JobStateCollector(Collector):
    """Every job's state from SQL, so the web processes' /metrics show the jobs whichever
    process ran them (the worker has no endpoint of its own)."""

    def describe(self):
        yield from self._families()

    @staticmethod
    def _families():
        return (GaugeMetricFamily("memoryweb_job_recorded_runs", "Runs recorded for a job.", labels=["job"]),
                GaugeMetricFamily("memoryweb_job_recorded_failures", "Failed runs recorded for a job.",
                                  labels=["job"]),
                GaugeMetricFamily("memoryweb_job_last_finished_timestamp_seconds",
                                  "When a job's last run finished (Unix time).", labels=["job"]),
                GaugeMetricFamily("memoryweb_job_paused", "1 while a job is paused.", labels=["job"]))

    def collect(self):
        from django.db import DatabaseError

        from apps.ops.jobs import JOBS
        from apps.ops.models import JobState

        runs, failures, finished, paused = self._families()
        try:
            states = {state.name: state for state in JobState.objects.all()}
        except DatabaseError:
            return
        for name in JOBS:  # a fixed set: bounded labels
            state = states.get(name)
            runs.add_metric([name], state.runs if state else 0)
            failures.add_metric([name], state.failures if state else 0)
            paused.add_metric([name], int(bool(state and state.paused)))
            if state and state.last_finished_at:
                finished.add_metric([name], state.last_finished_at.timestamp())
        yield from (runs, failures, finished, paused)


_registered: set[str] = set()


def register_collector(name: str, make: Callable[[], Collector]) -> None:
    """Register a scrape-time collector once per process, whichever app owns what it reads
    (each from its AppConfig.ready: ops its jobs' states, memories its outbox backlog).
    ``name`` keeps a second ready() (a test re-running it) from registering it twice."""
    if name not in _registered:
        REGISTRY.register(make())
        _registered.add(name)


def register_collectors() -> None:
    """ops' own collectors (OpsConfig.ready)."""
    register_collector("jobs", JobStateCollector)
