import json
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone

from apps.memories import stores
from apps.memories.models import IndexOutbox
from apps.tenancy.models import ApiKey, Namespace

#: The stores with a column of their own in the table (the rest: one line of totals).
_COLUMNS = ("memories", "keyword_index", "vector_index")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Command(BaseCommand):
    help = ("Counts per namespace (memories, active keys, keyword and vector index entries, "
            "and every other store of the registry, apps/memories/stores.py), disk usage, the "
            "outbox backlog and index health: a namespace whose vector or keyword index holds "
            "a different number of memories than SQL needs `reindex` (unless the outbox is "
            "still draining). --json for machines. While the embedded server runs, the "
            "vector counts come through its admin socket.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print one JSON document")
        parser.add_argument("--no-vectors", action="store_true",
                            help="skip the vector index counts")

    def handle(self, as_json=False, no_vectors=False, **options):
        from apps.memories.vectorstore import EmbeddedStoreBusy

        try:
            report = self.collect(vectors=not no_vectors)
        except EmbeddedStoreBusy as exc:
            raise CommandError(f"{exc} (--no-vectors skips the vector counts)") from None
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        self.stdout.write(f"{'namespace':<24} {'memories':>9} {'keys':>5} {'keyword':>8} "
                          f"{'vector':>8}  health")
        for row in report["namespaces"]:
            vector = "-" if row["vector_entries"] is None else row["vector_entries"]
            self.stdout.write(f"{row['slug']:<24} {row['memories']:>9} {row['active_keys']:>5} "
                              f"{row['keyword_entries'] if row['keyword_entries'] is not None else '-':>8} "
                              f"{vector:>8}  {row['health']}")
        outbox = report["outbox"]
        self.stdout.write(f"outbox: {outbox['backlog']} waiting"
                          + (f", oldest {outbox['oldest_seconds']} s" if outbox["backlog"] else ""))
        totals: dict[str, int] = {}
        for row in report["namespaces"]:
            for name, held in row["stores"].items():
                if name not in _COLUMNS:
                    totals[name] = totals.get(name, 0) + held
        if totals:
            self.stdout.write("stores: " + ", ".join(f"{name} {n}" for name, n in totals.items()))
        for name, size in report["disk_bytes"].items():
            self.stdout.write(f"disk {name}: {size / 1e6:.1f} MB")

    def collect(self, vectors: bool) -> dict:
        """Every registered store's count per namespace (external ones, the vector index,
        unless ``vectors`` is off); the stores that mirror the memory rows are compared
        with them for the health column."""
        counted = [store for store in stores.stores()
                   if store.count and (vectors or not store.external)]
        backlog = IndexOutbox.objects.aggregate(n=Count("pk"), oldest=Min("created_at"))
        pending = set(IndexOutbox.objects.values_list("namespace_id", flat=True).distinct())
        keys = dict(ApiKey.objects.active().exclude(namespace=None).values_list("namespace_id")
                    .annotate(n=Count("pk")))
        rows = []
        for namespace in Namespace.objects.order_by("slug"):
            held = {store.name: store.count(namespace, None) for store in counted}
            memories = held.get("memories") or 0
            keyword, vector = held.get("keyword_index"), held.get("vector_index")
            problems = [f"{store.name.replace('_', ' ')} {held[store.name]} != {memories}"
                        for store in counted if store.mirrors_memories
                        and held[store.name] is not None and held[store.name] != memories]
            if problems:
                health = ("draining outbox: " if namespace.pk in pending else "reindex needed: ") \
                    + "; ".join(problems)
            else:
                health = "ok"
            rows.append({"slug": namespace.slug, "memories": memories,
                         "active_keys": keys.get(namespace.pk, 0), "keyword_entries": keyword,
                         "vector_entries": vector, "health": health,
                         "archived": namespace.archived_at is not None,
                         "stores": {name: n for name, n in held.items() if n is not None}})
        disk = {"data_dir": _size(settings.DATA_DIR)}
        if connection.vendor == "sqlite":
            name = Path(settings.DATABASES["default"]["NAME"])
            disk["sqlite"] = sum(_size(Path(f"{name}{suffix}")) for suffix in ("", "-wal", "-shm"))
        if not settings.CHROMA_URL:
            disk["chroma"] = _size(settings.CHROMA_PATH)
        oldest = backlog["oldest"]
        return {"namespaces": rows, "disk_bytes": disk, "pid": os.getpid(),
                "outbox": {"backlog": backlog["n"],
                           "oldest_seconds": int((timezone.now() - oldest).total_seconds())
                           if oldest else None}}
