"""Periodic work on a daemon thread inside a server process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)

#: Whether this process starts the threads that read the database on their own schedule,
#: unasked by any request or command: the key cache's sweep (apps/tenancy/key_cache.py)
#: and the keyword indexes' warming (apps/memories/keyword_index_log.py). Test processes
#: turn it off (tests/plugins/background_threads.py): such a thread would read the test
#: database on a second connection while a test holds its transaction (SQLite's shared
#: in-memory cache: "database table is locked"); the tests run that work themselves.
AUTONOMOUS_THREADS = True


def run_every(interval: float, job: Callable[[], object], name: str) -> threading.Thread:
    """Call ``job`` every ``interval`` seconds for the life of the process.

    An error is logged and the next run goes ahead; after each run the thread's
    database connection is tidied up, as Django does after a request.
    """

    def loop() -> None:
        pause = threading.Event()
        while not pause.wait(interval):
            try:
                job()
            except Exception:
                log.exception("background job %s failed", name)
            finally:
                close_old_connections()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


class FlushedBuffer:
    """Bookkeeping buffered per process and written by :meth:`flush` on a background
    thread every ``MEMORYWEB_RECALL_STATS_SECONDS`` (recall statistics, keys'
    ``last_used_at``): statistics, not acknowledged writes, kept off the request path.
    ``interval``: seconds between flushes; None reads the setting each time (so a setting
    changed at run time, or in a test, takes effect); 0 or less means write inline."""

    #: The flush thread's name.
    thread_name = "flush"

    def __init__(self, interval: float | None = None) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return float(settings.MEMORYWEB_RECALL_STATS_SECONDS)

    def _start(self) -> None:
        """Start the flush thread once (the caller holds ``_lock``)."""
        if self._thread is None:
            self._thread = run_every(self.interval, self.flush, self.thread_name)

    def flush(self) -> int:
        raise NotImplementedError
