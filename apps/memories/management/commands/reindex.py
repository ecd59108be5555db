"""manage.py reindex: rebuild every derived store of the registry (apps/memories/stores.py:
the keyword tables on SQLite, the vector index) from SQL, the truth."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.memories import stores
from apps.memories.models import Memory
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.models import Namespace


class Command(BaseCommand):
    help = (
        "Rebuild every derived store of the registry (apps/memories/stores.py: the vector "
        "index in Chroma and, on SQLite, the keyword tables) from SQL, the source of truth: "
        "every namespace, or one. Builds a fresh collection and swaps it in, so recall "
        "keeps working meanwhile."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", help="slug of the one namespace to rebuild")

    def handle(self, *args, **opts):
        try:
            self._reindex(opts.get("namespace"))
        except EmbeddedStoreBusy as exc:
            raise CommandError(str(exc)) from None

    def _reindex(self, namespace: str | None) -> None:
        namespaces = Namespace.objects.all()
        if namespace:
            namespaces = namespaces.filter(slug=namespace)
            if not namespaces.exists():
                raise CommandError(f"no namespace {namespace!r}")
        if not namespace:
            for store in stores.stores():
                for dropped in store.drop_orphans() if store.drop_orphans else []:
                    self.stdout.write(f"dropped {dropped}")
        derived = [store for store in stores.stores() if store.rebuild]
        for ns in namespaces:
            total = Memory.objects.filter(namespace=ns).count()
            rebuilt: dict[str, int] = {}
            for store in derived:
                with tqdm(total=total, desc=f"{ns.slug} {store.name}", unit="mem",
                          disable=None) as bar:
                    done = store.rebuild(ns, bar.update)
                if done is not None:  # None: nothing to rebuild here (PostgreSQL's keywords)
                    rebuilt[store.name.replace("_", " ")] = done
            # Each derived store indexes every memory of the namespace: one number, and
            # each store's when there are several.
            each = ", ".join(f"{name} {n}" for name, n in rebuilt.items())
            self.stdout.write(f"{ns.slug}: {max(rebuilt.values(), default=0)} memories indexed"
                              + (f" ({each})" if len(rebuilt) > 1 else ""))
