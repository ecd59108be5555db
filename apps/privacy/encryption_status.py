"""What system admins see of encryption at rest and of the erasure ledger (issue 23, item 6).

Two read-only views over the key store (apps/core/keystore.py), shared by the REST API
(apps/privacy/api/encryption_views.py) and the dashboard (apps/dashboard/encryption_views.py):

- :func:`report`: the key provider, the id of its current key-encryption key (a
  fingerprint, never the key), each namespace's data keys as ``namespace_keys.status()``
  describes them (versions, created, last rotated, which KEK wraps them) joined with the
  namespaces in SQL, the shredded keys, and what is wrong. A key store that cannot be read
  or a key that does not unwrap is *reported*, never raised: the page that shows an
  operator the problem must not be the one that breaks on it.
- :func:`ledger_entries`: the erasure ledger, newest first, each entry cut down to
  :data:`LEDGER_FIELDS`. The ledger holds selectors only as keyed hashes; even those are
  left out here (only which fields the selector named), and so are the erased memory
  ids (a count instead): the pages answer "what was erased, when, under which
  certificate", not "whom".

Here in privacy (not ops or core) because it joins the key store with the namespaces in
SQL (tenancy, below privacy in pyproject.toml's layers) and is about personal data's
protection; the dashboard, above privacy, reads it from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core import erasure_ledger, key_providers, keystore, namespace_keys
from apps.core.errors import PermissionDenied, Unavailable
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

#: What a read of the key file can fail with (a missing or wrong KEK, bad JSON, an
#: entry missing a field, an unreadable directory): reported, never a 500.
READ_ERRORS = (key_providers.KeyUnavailable, keystore.KeystoreError, OSError, ValueError,
               KeyError, TypeError)


@dataclass(frozen=True)
class NamespaceKeys:
    """One namespace's data keys as the pages show them (no key material)."""

    namespace_id: int
    slug: str
    #: Whether a namespace with this id is in SQL; False: deleted, only its key is left.
    in_database: bool
    #: The namespace's ``encrypted`` flag in SQL (False when it is gone).
    encrypted: bool
    current_version: int
    versions: tuple[int, ...]
    created_at: dt.datetime | None
    rotated_at: dt.datetime | None
    #: Days since the current data key was made (its rotation, or the first key).
    key_age_days: int | None
    kek_ids: tuple[str, ...]
    #: Some version is wrapped under a KEK other than the provider's current one (a KEK
    #: rotation not finished: ``manage.py rotate_keys``); None when the KEK is unknown.
    rewrap_needed: bool | None


@dataclass(frozen=True)
class Shredded:
    namespace_id: int
    slug: str
    shredded_at: dt.datetime | None


@dataclass
class Report:
    provider: str
    kek_id: str | None
    namespaces: list[NamespaceKeys] = field(default_factory=list)
    shredded: list[Shredded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def require_system_admin(principal: Principal | None, what: str) -> Principal:
    """The principal, if a system admin: the key store spans every namespace."""
    if principal is None or not principal.is_system_admin:
        raise PermissionDenied(f"only a system admin may read {what}.")
    return principal


def _moment(raw: Any) -> dt.datetime | None:
    """An ISO 8601 time from the key store, aware (UTC if it names no zone); None if bad."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        found = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def provider_name() -> str:
    return str(getattr(settings, "MEMORYWEB_KEY_PROVIDER", "file") or "file")


def _current_kek(problems: list[str]) -> str | None:
    """The provider's current KEK id, or None with the reason added to ``problems``.

    ``create=False``: looking must never make a KEK. A KMS or Vault provider is code of
    the operator's: whatever it raises is reported, so everything is caught here."""
    try:
        return key_providers.provider(create=False).key_id()
    except Exception as exc:  # a third-party provider: any error it raises is a report
        problems.append(f"the key provider ({provider_name()}) has no usable key-encryption "
                        f"key: {exc}")
        return None


def report(principal: Principal | None) -> Report:
    """The encryption status (system admins; anyone else: :class:`PermissionDenied`)."""
    require_system_admin(principal, "the encryption status")
    found = Report(provider=provider_name(), kek_id=None)
    found.kek_id = _current_kek(found.problems)
    unreadable = None
    try:
        statuses = namespace_keys.status()
        shredded = namespace_keys.shredded()
    except READ_ERRORS as exc:
        unreadable, statuses, shredded = str(exc), [], {}
    try:
        found.problems += namespace_keys.problems()
    except Exception as exc:  # a provider's own error while unwrapping: a report
        found.problems.append(f"the data keys could not be checked: {exc}")
    if unreadable is not None and not any(unreadable in said for said in found.problems):
        found.problems.append(f"the key store's {namespace_keys.FILE_NAME} cannot be read: "
                              f"{unreadable}")
    in_sql = {row["pk"]: row for row in Namespace.objects.values("pk", "slug", "encrypted")}
    now = timezone.now()
    for status in statuses:
        row = in_sql.get(status.namespace_id)
        created, rotated = _moment(status.created_at), _moment(status.rotated_at)
        made = rotated or created
        found.namespaces.append(NamespaceKeys(
            namespace_id=status.namespace_id,
            slug=row["slug"] if row else status.slug,
            in_database=row is not None,
            encrypted=bool(row and row["encrypted"]),
            current_version=status.current_version, versions=status.versions,
            created_at=created, rotated_at=rotated,
            key_age_days=max(0, (now - made).days) if made else None,
            kek_ids=status.kek_ids,
            rewrap_needed=(None if found.kek_id is None
                           else any(kek != found.kek_id for kek in status.kek_ids))))
    with_keys = {status.namespace_id for status in statuses}
    for pk, row in sorted(in_sql.items(), key=lambda item: item[1]["slug"]):
        if row["encrypted"] and pk not in with_keys:
            found.problems.append(f"namespace {row['slug']} (id {pk}) is encrypted and has no "
                                  "data key in the key store: its memories cannot be read.")
    for namespace_id, record in sorted(shredded.items(), key=lambda item: str(item[0])):
        try:
            number = int(namespace_id)
        except ValueError:
            continue
        found.shredded.append(Shredded(number, str(record.get("slug", "")),
                                       _moment(record.get("at"))))
    found.shredded.sort(key=lambda item: item.shredded_at or dt.datetime.min.replace(tzinfo=dt.UTC),
                        reverse=True)
    return found


def plain_namespaces() -> list[dict[str, Any]]:
    """The namespaces in SQL with no data key (the dashboard lists them as not encrypted)."""
    try:
        keyed = {status.namespace_id for status in namespace_keys.status()}
    except READ_ERRORS:
        keyed = set()
    return [row for row in Namespace.objects.order_by("slug").values("pk", "slug", "encrypted")
            if row["pk"] not in keyed]


# --- the erasure ledger -----------------------------------------------------------------

#: The entry fields the pages show, and nothing else (see the module doc).
LEDGER_FIELDS = ("seq", "id", "at", "kind", "namespace_slug", "namespace_id", "memories",
                 "selector_fields", "through", "request", "certificate_sha256", "audit_seq",
                 "hash")


def safe_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger entry without its selector hashes and memory ids (see the module doc)."""
    where = entry.get("namespace") or {}
    audit = entry.get("audit") or {}
    memories = entry.get("memories") or []
    return {
        "seq": entry.get("seq"), "id": entry.get("id"), "at": _moment(entry.get("at")),
        "kind": entry.get("kind"),
        "namespace_slug": str(where.get("slug", "")) if isinstance(where, Mapping) else "",
        "namespace_id": where.get("id") if isinstance(where, Mapping) else None,
        "memories": len(memories) if isinstance(memories, list) else 0,
        "selector_fields": sorted(entry.get("selector") or {}),
        "through": _moment(entry.get("through")),
        "request": entry.get("request") or None,
        "certificate_sha256": entry.get("certificate_sha256") or None,
        "audit_seq": audit.get("seq") if isinstance(audit, Mapping) else None,
        "hash": entry.get("hash"),
    }


def ledger_entries(principal: Principal | None, *, kind: str | None = None,
                   since: dt.datetime | None = None,
                   namespace: str | None = None) -> list[dict[str, Any]]:
    """The ledger's entries, newest first, as :func:`safe_entry` shows them (system
    admins). ``kind``, ``since`` (entries at or after it) and ``namespace`` (the slug the
    entry names: deleted namespaces' entries too) narrow it. An unreadable ledger is a
    503 that names the file: the entries cannot be listed without it."""
    require_system_admin(principal, "the erasure ledger")
    try:
        found = [safe_entry(entry) for entry in erasure_ledger.entries()]
    except (erasure_ledger.LedgerError, OSError) as exc:
        raise Unavailable(f"the erasure ledger {erasure_ledger.path()} cannot be read: {exc}") \
            from exc
    if kind:
        found = [entry for entry in found if entry["kind"] == kind]
    if since is not None:
        found = [entry for entry in found if entry["at"] is not None and entry["at"] >= since]
    if namespace:
        found = [entry for entry in found if entry["namespace_slug"] == namespace]
    found.reverse()
    return found


def ledger_verdict() -> erasure_ledger.Verdict:
    """Whether the ledger's hash chain is intact (the dashboard shows it)."""
    return erasure_ledger.verify()
