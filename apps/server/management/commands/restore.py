from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, SystemCheckError
from tqdm import tqdm

from apps.server import backup
from apps.server.crypto import DecryptionError
from apps.server.management.commands.backup import read_passphrase


class Command(BaseCommand):
    help = ("Restore a backup into an empty data directory (MEMORYWEB_DATA_DIR) or an empty "
            "PostgreSQL database (DATABASE_URL): the snapshot is put in place and migrated, "
            "every memory is re-embedded into the vector index, the audit chain is verified "
            "and re-anchored, and every erasure, retention expiry and namespace deletion "
            "of the erasure ledger (MEMORYWEB_KEYSTORE_DIR) that came after the backup is "
            "applied again and listed. An encrypted backup's passphrase is read from stdin. "
            "Run it with the server stopped.")
    # Every settings check but "the database is behind the erasure ledger", which is what
    # this command fixes (run in handle).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="a file written by manage.py backup")

    def handle(self, file: Path, **options):
        from apps.privacy.ledger import checks_but_position

        if problems := checks_but_position():
            raise SystemCheckError("\n".join(str(problem) for problem in problems))
        if not file.exists():
            raise CommandError(f"{file} not found.")
        bars: dict[str, tqdm] = {}

        def progress(stage: str, done: int, total: int) -> None:
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(desc=stage, total=total, unit="mem" if stage == "vectors"
                                         else "step", disable=None)
            bar.update(done)

        try:
            report = backup.restore(file, passphrase=lambda: read_passphrase("Backup passphrase: "),
                                    progress=progress)
        except (backup.BackupError, DecryptionError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        self.stdout.write(f"restored {report.namespaces} namespaces, {report.memories} memories "
                          f"({report.reindexed} re-embedded); audit chain "
                          f"{'intact' if report.audit_ok else 'BROKEN'} "
                          f"({report.audit_entries} entries)")
        self.stdout.write(f"erasure ledger: {len(report.replayed)} entries replayed")
        for item in report.replayed:
            self.stdout.write(f"  replayed #{item.seq} {item.kind} in {item.namespace}: "
                              f"{item.erased} memories erased"
                              + (f", certificate {item.certificate_sha256}"
                                 if item.certificate_sha256 else "")
                              + "".join(f" ({text})" for text in item.notes))
        for note in report.notes:
            self.stdout.write(f"note: {note}")
        if not report.audit_ok:
            raise CommandError("the restored audit chain does not verify; see the note above.")
