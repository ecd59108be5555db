"""Checking a deletion certificate: one implementation for ``manage.py verify_certificate``
and the dashboard's "Verify now" (issue 17, item 4).

The checks: the certificate's SHA-256 matches its content; the audit entry it names holds
that hash; the audit chain is intact; and no registered store (apps/memories/stores.py:
memories, content hashes, versions, tags, external ids, keyword index, vector index,
outbox, idempotency records, the admin log, …) holds any erased id or content hash today.
The command runs them in its own process; the dashboard runs them inside the server,
which is what works while the server holds the embedded vector store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.audit.models import AuditEntry
from apps.audit.verify import verify
from apps.core.confirm import plural
from apps.memories import stores
from apps.privacy import ledger
from apps.privacy.erasure import FORMAT, certificate_hash, verify_stores
from apps.tenancy.models import Namespace


def store_labels() -> dict[str, str]:
    """What each store check asks, in words (the dashboard's result page and the card),
    from the registry at the time of asking, so a store registered later is labelled too."""
    return {store.name: store.label for store in stores.stores() if store.remaining}


class NotACertificate(ValueError):
    """The document is not a deletion certificate of this format."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    #: What a team admin is told instead of ``detail`` (None: the same). The audit chain
    #: is global: how long it is and where another tenant's entry broke it are for
    #: system admins only.
    team_detail: str | None = None

    def detail_for(self, system_admin: bool) -> str:
        return self.detail if system_admin or self.team_detail is None else self.team_detail


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    erased: int = 0
    namespace: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]


def check_format(certificate: Any) -> Mapping[str, Any]:
    """The certificate, or :class:`NotACertificate`."""
    if not isinstance(certificate, Mapping) or certificate.get("format") != FORMAT:
        raise NotACertificate(f"not a {FORMAT} certificate.")
    return certificate


def verify_certificate(certificate: Any) -> Verification:
    """Run every check on ``certificate`` (a parsed JSON document).

    Raises :class:`NotACertificate` for another document, and the erasure service's
    ``Unavailable`` when a store cannot be asked (the vector index is down)."""
    certificate = check_format(certificate)
    where = certificate.get("namespace") or {}
    result = Verification(erased=len(certificate.get("erased") or []),
                          namespace=str(where.get("slug") or ""))

    digest = certificate_hash(certificate)
    matches = digest == certificate.get("certificate_sha256")
    result.checks.append(Check("certificate hash", matches, "matches its content" if matches
                               else "the certificate was altered"))

    anchor = certificate.get("audit") or {}
    entry = AuditEntry.objects.filter(seq=anchor.get("seq")).first()
    anchored = (entry is not None and entry.entry_hash == anchor.get("entry_hash")
                and entry.summary.get("certificate_sha256") == digest)
    replayed = None if anchored else ledger.replayed_certificate(digest, anchor)
    result.checks.append(Check(
        "audit entry", anchored or replayed is not None,
        f"#{anchor.get('seq')} records this certificate's hash" if anchored
        else (f"#{anchor.get('seq')} is not in this database (restored from an earlier "
              f"backup); erasure ledger entry {replayed[0]} records this certificate's hash "
              f"and was replayed here (audit #{replayed[1]})") if replayed
        else "not found" if entry is None else "does not record this certificate's hash"))

    chain = verify()
    result.checks.append(Check(
        "audit chain", chain.ok,
        f"{chain.checked} entries intact" if chain.ok
        else f"broken at entry {chain.broken[0]}: {chain.broken[1]}",
        team_detail="intact up to the signed anchor" if chain.ok
        else "broken: tell a system admin to run manage.py audit_verify"))

    namespace = Namespace.objects.filter(pk=where.get("id"), slug=where.get("slug")).first()
    stores = verify_stores(namespace, certificate.get("erased") or [],
                           [item["id"] for item in certificate.get("retained") or []],
                           touched=certificate.get("touched"))
    for store, found in stores.items():
        held = plural(found["remaining"], "erased item", "erased items")
        result.checks.append(Check(f"store {store}", found["ok"], f"{held} held"))
    return result
