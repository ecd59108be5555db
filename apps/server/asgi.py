"""The server process's start-up: what ``memoryweb/asgi.py`` runs once, under Daphne.

It composes the apps (the admin socket of apps/server/control.py, memories' background
drain, the in-process job worker of apps/ops/worker.py) around the thread-pool handler
of apps/core/asgi.py; that is why it lives in the top layer and core keeps only the
handler and the event-loop bookkeeping.
"""

from __future__ import annotations

import sys

from django.conf import settings

from apps.core.asgi import ThreadPoolASGIHandler


def get_asgi_application() -> ThreadPoolASGIHandler:
    """Start the server's background parts and return the HTTP handler (Django is set up
    by the entry point, memoryweb/asgi.py, which checks the settings first)."""
    from apps.memories.indexing import start_background_drain

    # Shorter GIL slices: a thread coming back from SQLite or onnxruntime (which run
    # without the GIL) waits at most this long for it (docs/performance.md).
    sys.setswitchinterval(settings.MEMORYWEB_GIL_SWITCH_MS / 1000)

    # Embedded: this process owns the data directory's vector store and serves commands
    # through its admin socket (apps/server/control.py); first, before anything opens the store.
    from apps.server import control

    control.start()
    # Each server process replays vector-index work left by an outage (idempotent).
    start_background_drain(settings.MEMORYWEB_DRAIN_SECONDS)
    if settings.MEMORYWEB_JOBS_IN_PROCESS:  # embedded: no worker process to run the jobs
        from apps.ops.worker import start_in_process

        start_in_process()
    return ThreadPoolASGIHandler()
