from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, SystemCheckError
from tqdm import tqdm

from apps.core import key_backup, keystore
from apps.core.key_providers import KeyUnavailable
from apps.core.stream_crypto import DecryptionError
from apps.server import backup
from apps.server.management.commands.backup import read_keys_passphrase, read_passphrase


class Command(BaseCommand):
    help = ("Restore a backup into an empty data directory (MEMORYWEB_DATA_DIR) or an empty "
            "PostgreSQL database (DATABASE_URL): the snapshot is put in place and migrated, "
            "every memory is re-embedded into the vector index, the audit chain is verified "
            "and re-anchored, and every erasure, retention expiry and namespace deletion "
            "of the erasure ledger (MEMORYWEB_KEYSTORE_DIR) that came after the backup is "
            "applied again and listed. An encrypted backup's passphrase is read from stdin. "
            "--keys-from puts a key backup (backup --keys-to) into the key store first: "
            "never a key the store records as shredded, never over another KEK unless "
            "--replace-kek. Run it with the server stopped.")
    # Every settings check but "the database is behind the erasure ledger", which is what
    # this command fixes (run in handle).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, nargs="?",
                            help="a data backup written by manage.py backup --output")
        parser.add_argument(
            "--keys-from", type=Path, metavar="FILE",
            help="a key backup written by manage.py backup --keys-to, restored into "
            "MEMORYWEB_KEYSTORE_DIR before the data (alone: only the keys)")
        parser.add_argument(
            "--keys-passphrase-file", type=Path, metavar="FILE",
            help="read the key backup's passphrase from FILE's first line (else "
            "$MEMORYWEB_KEYS_PASSPHRASE, else asked for on a terminal)")
        parser.add_argument(
            "--replace-kek", action="store_true",
            help="install the key backup's KEK over a different one in the key store (the "
            "present one is kept as retired); refused without it")

    def handle(self, file: Path | None, keys_from: Path | None = None,
               keys_passphrase_file: Path | None = None, replace_kek: bool = False,
               **options):
        if file is None and keys_from is None:
            raise CommandError("give a data backup FILE, --keys-from FILE, or both.")
        if file is not None and not file.exists():
            raise CommandError(f"{file} not found.")
        if keys_from is not None:
            # Before the checks: the key check (E014) fails on exactly the missing keys
            # this puts back.
            self._keys(keys_from, keys_passphrase_file, replace_kek)
        if file is not None:
            self._data(file)

    def _keys(self, keys_from: Path, passphrase_file: Path | None, replace_kek: bool) -> None:
        if not keys_from.exists():
            raise CommandError(f"{keys_from} not found.")
        passphrase = read_keys_passphrase(passphrase_file, new=False)
        try:
            done = key_backup.restore(keys_from, passphrase, force=replace_kek)
        except (key_backup.KeyBackupError, KeyUnavailable, keystore.KeystoreError,
                OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"keys restored into {keystore.directory()}: {len(done.added)} "
                          f"namespace keys added, {len(done.kept)} already there (kept), "
                          f"{len(done.shredded)} shredded here and not brought back; KEK "
                          f"{done.kek}")
        for namespace_id in done.shredded:
            self.stdout.write(f"  namespace {namespace_id}: its key was shredded here "
                              "(a deleted namespace); it stays destroyed")
        for note in done.notes:
            self.stdout.write(f"note: {note}")

    def _data(self, file: Path) -> None:
        from apps.privacy.ledger import checks_but_position

        if problems := checks_but_position():
            raise SystemCheckError("\n".join(str(problem) for problem in problems))
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
