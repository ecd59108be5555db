from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from apps.memories import lexical
from apps.memories.indexing import reindex_namespace
from apps.memories.models import Memory
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.models import Namespace


class Command(BaseCommand):
    help = (
        "Rebuild the vector index (Chroma) and, on SQLite, the keyword tables from SQL, "
        "the source of truth: every namespace, or one. Builds a fresh collection and swaps "
        "it in, so recall keeps working meanwhile."
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
            for orphan in lexical.drop_orphans():
                self.stdout.write(f"dropped the keyword table of deleted namespace {orphan}")
        for ns in namespaces:
            with transaction.atomic():  # recall never sees a half-built keyword table
                lexical.rebuild(ns.pk)
            total = Memory.objects.filter(namespace=ns).count()
            with tqdm(total=total, desc=ns.slug, unit="mem", disable=None) as bar:
                done = reindex_namespace(ns, progress=bar.update)
            self.stdout.write(f"{ns.slug}: {done} memories indexed")
