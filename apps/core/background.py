"""Periodic work on a daemon thread inside a server process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections

log = logging.getLogger(__name__)


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
