import getpass
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.server import backup


def read_passphrase(prompt: str) -> str:
    """From the terminal (twice, without echo) or the first line of stdin (scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if prompt.startswith("New") and getpass.getpass("Repeat: ") != first:
            raise CommandError("the passphrases differ.")
        return first
    return sys.stdin.readline().rstrip("\n")


class Command(BaseCommand):
    help = ("Write a consistent backup while the server runs: the database snapshot (SQLite "
            "online backup, or pg_dump) and the local secret key, as a tar.gz; with --encrypt, "
            "AES-256-GCM under a passphrase read from stdin. Vectors are re-embedded on "
            "restore (manage.py restore FILE).")

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", required=True, type=Path, help="the backup file")
        parser.add_argument("--encrypt", action="store_true",
                            help="encrypt with a passphrase read from stdin (or asked for)")

    def handle(self, output: Path, encrypt: bool, **options):
        passphrase = read_passphrase("New backup passphrase: ") if encrypt else None
        if encrypt and not passphrase:
            raise CommandError("the passphrase is empty.")
        with tqdm(desc="backup", unit="B", unit_scale=True, disable=None) as bar:
            try:
                manifest = backup.create(output, passphrase=passphrase,
                                         progress=lambda stage, size: bar.update(size))
            except backup.BackupError as exc:
                raise CommandError(str(exc)) from None
        counts = manifest["counts"]
        self.stdout.write(f"{output}: {counts['namespaces']} namespaces, {counts['memories']} "
                          f"memories, {counts['audit_entries']} audit entries"
                          f"{', encrypted' if encrypt else ''} ({output.stat().st_size} bytes)")
