"""manage.py audit_verify: check the audit chain; exit 1 on the first broken link."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.audit import anchor
from apps.audit.models import AuditEntry
from apps.audit.verify import verify


class Command(BaseCommand):
    help = ("Verify the hash-chained audit log: every entry's hash, every link to the entry "
            "before, gapless sequence numbers, and the tip against the head row and the anchor "
            "file (MEMORYWEB_AUDIT_ANCHOR). Reports the first broken link and exits 1 on any "
            "edit, deletion, reordering or truncation; exits 0 when the chain is intact.")

    def add_arguments(self, parser):
        parser.add_argument("--reanchor", action="store_true",
                            help="After a successful check, write the anchor file at the "
                            "log's tip (e.g. after restoring a backup on a new machine). "
                            "Skipped when the anchor itself is what fails.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, reanchor: bool = False, no_progress: bool = False, **options):
        total = AuditEntry.objects.count()
        with tqdm(total=total, unit="entry", disable=no_progress or not total,
                  file=self.stderr._out) as bar:
            verdict = verify(progress=bar.update)
        if verdict.broken and reanchor and "anchor" in verdict.broken[1]:
            anchor_problem = verdict.broken
            verdict.broken = None  # the links themselves were all checked before the tip
            anchor.advance(verdict.last_seq, verdict.last_hash, force=True)
            self.stdout.write(f"anchor rewritten at entry {verdict.last_seq} "
                              f"(was: {anchor_problem[1]})")
        for note in verdict.notes:
            self.stdout.write(f"note: {note}")
        if verdict.broken:
            seq, problem = verdict.broken
            raise CommandError(f"audit chain BROKEN at entry {seq}: {problem} "
                               f"({verdict.checked} entries verified before it)")
        if reanchor:
            anchor.advance(verdict.last_seq, verdict.last_hash, force=True)
        self.stdout.write(self.style.SUCCESS(
            f"audit chain intact: {verdict.checked} entries, tip #{verdict.last_seq} "
            f"{verdict.last_hash[:16]}…"))
