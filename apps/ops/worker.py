"""The huey consumer inside the server process (embedded mode).

Scaled deployments run ``manage.py run_huey`` as a worker process instead. Here the
consumer's scheduler and worker threads run as daemon threads of the Daphne process;
huey's signal handlers are not installed (they would take SIGTERM and SIGINT from
Daphne, which must still shut down the server).
"""

from __future__ import annotations

import logging

from django.conf import settings
from huey.consumer import Consumer

log = logging.getLogger(__name__)

_consumer: Consumer | None = None


class InProcessConsumer(Consumer):
    def _set_signal_handlers(self) -> None:
        """The server owns the process's signals."""


def start_in_process() -> Consumer:
    global _consumer
    if _consumer is None:
        from django.utils.module_loading import autodiscover_modules
        from huey.contrib.djhuey import HUEY

        autodiscover_modules("tasks")  # as run_huey does: register every app's tasks

        options = dict(settings.HUEY.get("consumer", {}))
        options["workers"] = min(options.get("workers", 1), 2)
        _consumer = InProcessConsumer(HUEY, **options)
        _consumer.start()
        log.info("background jobs: in-process consumer started (%s worker threads)",
                 options["workers"])
    return _consumer
