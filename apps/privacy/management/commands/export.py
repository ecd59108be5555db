"""manage.py export: the REST export, to a file, with a progress bar."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.core import stream_crypto
from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.privacy import export
from apps.privacy.selectors import select
from apps.tenancy.principal import Principal


class Command(BaseCommand):
    help = ("Export everything held about a namespace, or about one subject in it, as JSON "
            "lines: memories with their versions, the grants that expose them, the audit "
            "entries about them, and a closing manifest line with counts and the SHA-256 of "
            "the body. The same format as GET /api/v1/export. Audited as a system action.")

    def add_arguments(self, parser):
        parser.add_argument("--namespace", required=True, help="the namespace's slug")
        subject = parser.add_mutually_exclusive_group()
        subject.add_argument("--agent-id", help="only memories stored by this agent")
        subject.add_argument("--session-id", help="only memories of this session")
        subject.add_argument("--subject-id", help='only memories whose metadata "subject_id" '
                             "is this")
        subject.add_argument("--ids", help="only these memory ids (comma-separated)")
        parser.add_argument("--output", "-o", required=True, help="the file to write")
        parser.add_argument(
            "--encrypt", action="store_true",
            help="encrypt the file under a passphrase (AES-256-GCM, key from scrypt; "
            "import_memories reads it back): from --passphrase-file, else asked on the "
            "terminal, else the first line of stdin; at least 12 characters")
        parser.add_argument("--passphrase-file", type=Path,
                            help="a file whose first line is the passphrase (with --encrypt)")

    def handle(self, *args, namespace, agent_id, session_id, subject_id, ids, output,
               encrypt=False, passphrase_file=None, **opts):
        if passphrase_file is not None and not encrypt:
            raise CommandError("--passphrase-file goes with --encrypt.")
        try:
            passphrase = stream_crypto.read_passphrase(
                "New passphrase: ", new=True, file=passphrase_file,
                minimum=stream_crypto.MIN_PASSPHRASE) if encrypt else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        principal = Principal(label="system:manage.py export", agent_id="", role=Role.SYSTEM)
        data = {"namespace": namespace, "agent_id": agent_id, "session_id": session_id,
                "subject_id": subject_id, "ids": ids.split(",") if ids else None}
        try:
            selector = select(principal, {k: v for k, v in data.items() if v is not None})
        except ServiceError as exc:
            raise CommandError(f"{exc.field + ': ' if exc.field else ''}{exc.message}") from None
        total = selector.memories().count()
        # 0600 from the start: the file holds everything about the namespace (in clear
        # unless --encrypt) while it is written, and if the export stops half-way.
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as sink, tqdm(total=total, unit="memory",
                                                       file=self.stderr._out) as bar:
            out = stream_crypto.EncryptingWriter(sink, passphrase) if passphrase else sink
            for chunk in export.start(principal, selector):
                out.write(chunk)
                bar.update(chunk.count(b'{"type":"memory"'))
            out.close()
        os.chmod(output, 0o600)
        self.stdout.write(f"exported {total} memories of {namespace} to {output}"
                          + (", encrypted" if passphrase else ""))
