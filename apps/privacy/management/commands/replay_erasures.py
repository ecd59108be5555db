"""manage.py replay_erasures: apply the erasure ledger's entries this database does not
include (a data directory or database put back by hand, not by ``manage.py restore``).
The server refuses to start until it has run (system check memoryweb.E013)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, SystemCheckError
from tqdm import tqdm

from apps.core import erasure_ledger
from apps.core.errors import ServiceError
from apps.privacy import ledger


class Command(BaseCommand):
    help = ("Re-apply every erasure, retention expiry and namespace deletion of the erasure "
            "ledger (MEMORYWEB_KEYSTORE_DIR) that this database does not include, through "
            "the erasure path, and list them. Run it with the server stopped, after putting "
            "an older data directory or database back without manage.py restore. "
            "--dry-run lists them only.")
    requires_system_checks: list[str] = []  # E013 is what this fixes

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")

    def handle(self, dry_run: bool, **options):
        if problems := ledger.checks_but_position():
            raise SystemCheckError("\n".join(str(problem) for problem in problems))
        verdict = erasure_ledger.verify()
        if not verdict.ok:
            raise CommandError(f"the erasure ledger {erasure_ledger.path()} does not verify: "
                               f"{verdict.broken[1] if verdict.broken else ''}; nothing replayed.")
        behind = ledger.pending()
        self.stdout.write(f"erasure ledger: {verdict.entries} entries; this database includes "
                          f"{verdict.entries - len(behind)}; {len(behind)} to replay")
        if dry_run:
            for entry in behind:
                self.stdout.write(f"  would replay #{entry['seq']} {entry['kind']} in "
                                  f"{entry['namespace'].get('slug')}: "
                                  f"{len(entry.get('memories') or [])} memories")
            return
        with tqdm(total=len(behind), desc="erasures replayed", unit="entry", disable=None) as bar:
            try:
                done = ledger.replay(behind, progress=lambda item: bar.update(1))
            except ServiceError as exc:
                raise CommandError(f"replay stopped: {exc}; run the command again.") from None
        for item in done:
            self.stdout.write(f"  replayed #{item.seq} {item.kind} in {item.namespace}: "
                              f"{item.erased} memories erased"
                              + (f", certificate {item.certificate_sha256}"
                                 if item.certificate_sha256 else "")
                              + "".join(f" ({text})" for text in item.notes))
