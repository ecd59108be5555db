"""manage.py verify_certificate FILE: re-check a deletion certificate against the live
stores and the audit chain (the checks are apps/privacy/certificates.py's, the same the
dashboard's "Verify now" runs inside the server)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ServiceError
from apps.memories import stores
from apps.privacy.certificates import NotACertificate, verify_certificate
from apps.privacy.erasure import FORMAT


class Command(BaseCommand):
    @property
    def help(self) -> str:  # type: ignore[override]  (the stores are the registry's, read now)
        checked = ", ".join(store.name.replace("_", " ") for store in stores.stores()
                            if store.remaining)
        return ("Check a deletion certificate (the JSON from GET /api/v1/erasure-requests/{id}/"
                "certificate): its SHA-256 matches its content, the audit entry it names holds "
                f"that hash and the audit chain is intact, and no store ({checked}) holds any "
                "erased id or content hash today. Exits 1 if any check fails.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the certificate JSON file")

    def handle(self, *args, file: Path, **options):
        try:
            certificate = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            result = verify_certificate(certificate)
        except NotACertificate:
            raise CommandError(f"{file} is not a {FORMAT} certificate.") from None
        except ServiceError as exc:
            raise CommandError(f"cannot check the stores: {exc.message}") from None
        for check in result.checks:
            detail = f": {check.detail}" if check.detail else ""
            self.stdout.write(f"{'ok  ' if check.ok else 'FAIL'} {check.name}{detail}")
        if not result.ok:
            raise CommandError(f"certificate NOT verified: {', '.join(result.failures)} failed")
        self.stdout.write(self.style.SUCCESS(
            f"certificate verified: {result.erased} memories erased "
            f"from {result.namespace}, nothing left in any store"))
