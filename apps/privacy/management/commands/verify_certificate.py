"""manage.py verify_certificate FILE: re-check a deletion certificate against the live
stores and the audit chain."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.audit.models import AuditEntry
from apps.audit.verify import verify
from apps.core.confirm import plural
from apps.core.errors import ServiceError
from apps.privacy.erasure import FORMAT, certificate_hash, verify_stores
from apps.tenancy.models import Namespace


class Command(BaseCommand):
    help = ("Check a deletion certificate (the JSON from GET /api/v1/erasure-requests/{id}/"
            "certificate): its SHA-256 matches its content, the audit entry it names holds "
            "that hash and the audit chain is intact, and no store (memories, content hashes, "
            "versions, tags, keyword index, vector index, outbox, idempotency records) holds "
            "any erased id or content hash today. Exits 1 if any check fails.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the certificate JSON file")

    def handle(self, *args, file: Path, **options):
        try:
            certificate = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        if not isinstance(certificate, dict) or certificate.get("format") != FORMAT:
            raise CommandError(f"{file} is not a {FORMAT} certificate.")
        failures = []

        def check(name: str, ok: bool, detail: str = "") -> None:
            self.stdout.write(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
            if not ok:
                failures.append(name)

        digest = certificate_hash(certificate)
        check("certificate hash", digest == certificate.get("certificate_sha256"),
              "matches its content" if digest == certificate.get("certificate_sha256")
              else "the certificate was altered")
        anchor = certificate.get("audit") or {}
        entry = AuditEntry.objects.filter(seq=anchor.get("seq")).first()
        check("audit entry", entry is not None and entry.entry_hash == anchor.get("entry_hash")
              and entry.summary.get("certificate_sha256") == digest,
              f"#{anchor.get('seq')} records this certificate's hash" if entry else "not found")
        chain = verify()
        check("audit chain", chain.ok, f"{chain.checked} entries intact" if chain.ok
              else f"broken at entry {chain.broken[0]}: {chain.broken[1]}")
        where = certificate.get("namespace") or {}
        namespace = Namespace.objects.filter(pk=where.get("id"), slug=where.get("slug")).first()
        try:
            stores = verify_stores(namespace, certificate.get("erased") or [],
                                   [item["id"] for item in certificate.get("retained") or []])
        except ServiceError as exc:
            raise CommandError(f"cannot check the stores: {exc.message}") from None
        for store, result in stores.items():
            held = plural(result["remaining"], "erased item", "erased items")
            check(f"store {store}", result["ok"], f"{held} held")
        if failures:
            raise CommandError(f"certificate NOT verified: {', '.join(failures)} failed")
        self.stdout.write(self.style.SUCCESS(
            f"certificate verified: {len(certificate.get('erased') or [])} memories erased "
            f"from {where.get('slug')}, nothing left in any store"))
