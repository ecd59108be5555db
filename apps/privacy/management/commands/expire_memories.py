"""manage.py expire_memories: erase memories past retention, with certificates."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.privacy.retention import expire
from apps.tenancy.models import Namespace


class Command(BaseCommand):
    help = ("Erase memories past their namespace's retention_days, and memories past their "
            "own expires_at, through the erasure path: each batch becomes an executed erasure "
            "request by system:retention with a deletion certificate and audit entries. "
            "Archived namespaces are skipped (they refuse writes).")

    def add_arguments(self, parser):
        parser.add_argument("--namespace", help="only this namespace (default: all)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what is due, erase nothing")

    def handle(self, *args, namespace=None, dry_run=False, **options):
        namespaces = Namespace.objects.order_by("slug")
        if namespace:
            namespaces = namespaces.filter(slug=namespace)
            if not namespaces.exists():
                raise CommandError(f"namespace {namespace!r} not found.")
        total_due = total_erased = 0
        for ns in tqdm(list(namespaces), unit="namespace", file=self.stderr._out,
                       disable=len(namespaces) < 2):
            report = expire(ns, dry_run=dry_run)
            total_due += report.due
            total_erased += report.erased
            if report.due:
                certificates = ", ".join(r.certificate_sha256[:12] for r in report.requests)
                self.stdout.write(f"{ns.slug}: {report.due} due"
                                  + ("" if dry_run else f", {report.erased} erased "
                                     f"(certificates {certificates or 'none'})"))
        verb = "due (dry run)" if dry_run else "erased"
        self.stdout.write(f"{total_erased if not dry_run else total_due} memories {verb}")
