from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.server import backup
from apps.server.crypto import DecryptionError
from apps.server.management.commands.backup import read_passphrase


class Command(BaseCommand):
    help = ("Restore a backup into an empty data directory (MEMORYWEB_DATA_DIR) or an empty "
            "PostgreSQL database (DATABASE_URL): the snapshot is put in place and migrated, "
            "every memory is re-embedded into the vector index, the audit chain is verified "
            "and re-anchored. An encrypted backup's passphrase is read from stdin. Run it "
            "with the server stopped.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="a file written by manage.py backup")

    def handle(self, file: Path, **options):
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
        for note in report.notes:
            self.stdout.write(f"note: {note}")
        if not report.audit_ok:
            raise CommandError("the restored audit chain does not verify; see the note above.")
