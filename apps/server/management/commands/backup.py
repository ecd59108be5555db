from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.core import key_backup, keystore, stream_crypto
from apps.core.key_providers import KeyUnavailable
from apps.server import backup

#: The key backup's passphrase, when --keys-passphrase-file is not given (never an
#: argument: a command line is visible to every user of the machine, and in shell history).
KEYS_PASSPHRASE_ENV = "MEMORYWEB_KEYS_PASSPHRASE"


def read_passphrase(prompt: str, *, new: bool = False) -> str:
    """A data backup's passphrase: from the terminal (twice, without echo, when ``new``)
    or the first line of stdin (scripts)."""
    try:
        return stream_crypto.read_passphrase(prompt, new=new)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def read_keys_passphrase(file: Path | None, *, new: bool) -> str:
    """The key backup's passphrase: the first line of ``file``, else the environment
    variable MEMORYWEB_KEYS_PASSPHRASE, else asked for on a terminal (twice for a new
    one). Not stdin: ``--encrypt`` reads the data backup's passphrase there. A new one is
    at least key_backup.MIN_PASSPHRASE characters: it is all that guards every key."""
    try:
        return stream_crypto.read_passphrase(
            "New key backup passphrase: " if new else "Key backup passphrase: ", new=new,
            file=file, file_option="--keys-passphrase-file", env=KEYS_PASSPHRASE_ENV,
            stdin=False, minimum=key_backup.MIN_PASSPHRASE,
            what="the key backup's passphrase")
    except ValueError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = ("Write a consistent backup while the server runs: the database snapshot (SQLite "
            "online backup, or pg_dump) and the local secret key, as a tar.gz; with --encrypt, "
            "AES-256-GCM under a passphrase read from stdin. Vectors are re-embedded on "
            "restore (manage.py restore FILE). The key store (MEMORYWEB_KEYSTORE_DIR: "
            "namespace data keys, KEK, erasure ledger) is never in it; --keys-to writes the "
            "key material to a separate file under its own passphrase (docs/encryption.md"
            "#key-backups).")

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", type=Path,
                            help="the data backup file (no key material in it)")
        parser.add_argument("--encrypt", action="store_true",
                            help="encrypt with a passphrase read from stdin (or asked for)")
        parser.add_argument(
            "--keys-to", type=Path, metavar="FILE",
            help="also (or only) write the key material — namespace-keys.json and, for the "
            "file provider, the KEK — to FILE, sealed with scrypt + AES-256-GCM under a "
            "passphrase; keep it apart from the data backups (restore --keys-from)")
        parser.add_argument(
            "--keys-passphrase-file", type=Path, metavar="FILE",
            help=f"read the key backup's passphrase from FILE's first line (else "
            f"${KEYS_PASSPHRASE_ENV}, else asked for on a terminal)")

    def handle(self, output: Path | None, encrypt: bool, keys_to: Path | None = None,
               keys_passphrase_file: Path | None = None, **options):
        if output is None and keys_to is None:
            raise CommandError("give --output FILE (the data), --keys-to FILE (the keys), "
                               "or both.")
        if output is not None and keys_to is not None and output.resolve() == keys_to.resolve():
            raise CommandError("--keys-to must be another file than --output.")
        keys_passphrase = (read_keys_passphrase(keys_passphrase_file, new=True)
                           if keys_to is not None else None)
        passphrase = read_passphrase("New backup passphrase: ", new=True) if encrypt else None
        if output is not None:
            self._data(output, passphrase)
        if keys_to is not None and keys_passphrase is not None:
            # After the data: every key the data backup's namespaces need is in it.
            try:
                held = key_backup.write(keys_to, keys_passphrase)
            except (key_backup.KeyBackupError, KeyUnavailable, keystore.KeystoreError,
                    OSError) as exc:
                raise CommandError(f"--keys-to {keys_to}: {exc}") from None
            self.stdout.write(
                f"{keys_to}: key backup of {held['namespaces']} namespace keys "
                f"({held['shredded']} shredded recorded), provider {held['provider']}"
                + (", with its KEK" if held["kek"] else ", no KEK file yet"
                   if held["provider"] == "file" else ", no KEK (the provider holds it)")
                + f" ({keys_to.stat().st_size} bytes); keep it apart from the data backups")

    def _data(self, output: Path, passphrase: str | None) -> None:
        encrypt = passphrase is not None
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
