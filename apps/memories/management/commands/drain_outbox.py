import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.memories.indexing import drain_outbox
from apps.memories.models import IndexOutbox
from apps.memories.vectorstore import EmbeddedStoreBusy


class Command(BaseCommand):
    help = (
        "Replay pending vector-index work (writes acknowledged while Chroma was "
        "unavailable). Exits non-zero if rows failed. Each web process already drains "
        "every MEMORYWEB_DRAIN_SECONDS. Beside a running embedded server, the vector "
        "writes go through its admin socket."
    )

    def add_arguments(self, parser):
        parser.add_argument("--watch", type=float, metavar="SECONDS",
                            help="keep running, draining every SECONDS (a worker process)")
        parser.add_argument("--limit", type=int, help="process at most this many rows")

    def handle(self, *args, **opts):
        try:
            self._drain(opts.get("watch"), opts.get("limit"))
        except EmbeddedStoreBusy as exc:
            raise CommandError(str(exc)) from None

    def _drain(self, watch: float | None, limit: int | None) -> None:
        if watch:
            while True:
                report = drain_outbox(limit=limit)
                if report.processed or report.failed:
                    self.stdout.write(f"processed={report.processed} failed={report.failed} "
                                      f"remaining={report.remaining}")
                time.sleep(watch)
        pending = IndexOutbox.objects.count()
        with tqdm(total=pending, desc="outbox", unit="row", disable=not pending) as bar:
            report = drain_outbox(limit=limit, progress=bar.update)
        self.stdout.write(f"processed={report.processed} failed={report.failed} "
                          f"remaining={report.remaining}")
        if report.failed:
            raise SystemExit(1)
