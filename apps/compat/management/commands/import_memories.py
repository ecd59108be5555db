"""manage.py import_memories: move memories into a namespace from an export, mem0 or seed 000."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.compat import formats
from apps.core import stream_crypto
from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.memories.imports import import_records
from apps.tenancy.principal import Principal

#: How many problems the summary lists before it only counts them.
SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import memories into a namespace, keeping each one's agent, session, times, "
        "importance and (from a MemoryWeb export) its id and version history. Formats: "
        "jsonl = MemoryWeb's own export (GET /api/v1/export, manage.py export); mem0 = the "
        "JSON of mem0's get_all; cmm = seed 000's data directory (memories.json and "
        "entities.json; the FAISS index is not needed, memories are embedded again). "
        "Running it again imports nothing twice: each record's source id is remembered. A "
        "bad record is reported with its line and skipped; the rest are imported. Audited "
        "as a system action. Exit status 1 if any record was skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", required=True, help="the receiving namespace's slug")
        parser.add_argument("--format", required=True, choices=["jsonl", "mem0", "cmm"],
                            help="what PATH holds (see above)")
        parser.add_argument("path", help="the file (jsonl, mem0) or data directory (cmm)")
        parser.add_argument("--batch-size", type=int, default=200,
                            help="memories embedded and written per transaction (default 200)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--passphrase-file", type=Path,
            help="for an encrypted export (manage.py export --encrypt): a file whose first "
            "line is its passphrase; without it the passphrase is asked on the terminal, "
            "else read from the first line of stdin")

    def handle(self, *args, namespace, format, path, batch_size, no_progress,
               passphrase_file=None, **options):
        source = Path(path)
        if not source.exists():
            raise CommandError(f"{source}: no such file or directory.")
        if format != "cmm" and source.is_dir():
            raise CommandError(f"{source} is a directory; --format {format} reads a file.")
        if not 1 <= batch_size <= 1000:
            raise CommandError("--batch-size must be from 1 to 1000.")
        principal = Principal(label="system:manage.py import_memories", agent_id="",
                              role=Role.SYSTEM)
        asked: list[str] = []

        def passphrase() -> str:  # asked once, and only for an encrypted file
            if not asked:
                asked.append(stream_crypto.read_passphrase("Passphrase: ", file=passphrase_file))
            return asked[0]

        def opener(file: Path):
            return stream_crypto.open_file(file, passphrase)

        try:
            total = formats.count(source, format, opener)
            with tqdm(total=total, unit="memory", disable=no_progress,
                      file=self.stderr._out) as bar:
                report = import_records(principal, namespace,
                                        formats.read(source, format, opener),
                                        progress=bar.update, batch_size=batch_size)
        except ServiceError as exc:
            raise CommandError(f"{exc.field + ': ' if exc.field else ''}{exc.message}") \
                from None
        except (ValueError, stream_crypto.DecryptionError) as exc:
            raise CommandError(f"{source}: {exc}") from None
        name = "memories.json" if source.is_dir() else source.name  # cmm: the file read
        for line, message in report.errors[:SHOWN]:
            self.stderr.write(f"{name}: {f'line {line}: ' if line else ''}{message}")
        if len(report.errors) > SHOWN:
            self.stderr.write(f"... and {len(report.errors) - SHOWN} more problems.")
        for line, message in report.warnings[:SHOWN]:
            self.stderr.write(f"{name}: {f'line {line}: ' if line else ''}warning: {message}")
        links = f", {report.linked} near-duplicate links restored" if report.linked else ""
        if report.superseded or report.conflicts:  # a consolidated namespace's lineage
            links += (f", {report.superseded} superseded memories and {report.conflicts} "
                      "conflict links restored")
        if report.kept_apart:
            links += f", {report.kept_apart} kept-apart links restored"
        self.stdout.write(
            f"{namespace}: {report.created} imported, {report.existing} already there{links}, "
            f"{len(report.errors)} problems (listed above; those records were skipped)"
            + (f", {len(report.warnings)} warnings" if report.warnings else "") + ".")
        if report.errors:
            raise SystemExit(1)
