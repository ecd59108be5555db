"""REST doors to the encryption status and the erasure ledger (system admins; issue 23,
item 6). Read-only; the work is in apps/privacy/encryption_status.py, shared with the
dashboard. Neither answer ever holds key material or a selector in clear: the KEK by its
fingerprint, the data keys by version and dates, ledger entries without their hashes of
the selector's values (apps/privacy/encryption_status.py says why)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import erasure_ledger
from apps.core.query_params import KnownQueryParams
from apps.core.validation import StrictSerializer, validate
from apps.privacy import encryption_status as services


class NamespaceKeysSerializer(serializers.Serializer):
    slug = serializers.CharField(help_text="From SQL; for a namespace no longer there, the "
                                 "slug the key store recorded.")
    id = serializers.IntegerField(source="namespace_id")
    in_database = serializers.BooleanField(help_text="False: the namespace is gone from SQL "
                                           "and only its key is left (shred it, or restore).")
    encrypted = serializers.BooleanField(help_text="The namespace's encrypted flag in SQL.")
    current_version = serializers.IntegerField(help_text="The data key version new writes use.")
    versions = serializers.SerializerMethodField(help_text="How many key versions are kept "
                                                 "(more than one while re-encrypting).")
    version_numbers = serializers.ListField(source="versions", child=serializers.IntegerField())
    created_at = serializers.DateTimeField(allow_null=True, help_text="The first data key.")
    rotated_at = serializers.DateTimeField(allow_null=True, help_text="The last rotation "
                                           "(a new data key); null: never rotated.")
    key_age_days = serializers.IntegerField(allow_null=True, help_text="Days since the "
                                            "current data key was made.")
    kek_ids = serializers.ListField(child=serializers.CharField(), help_text="The ids "
                                    "(fingerprints) of the key-encryption keys wrapping its "
                                    "versions.")
    rewrap_needed = serializers.BooleanField(allow_null=True, help_text="Some version is "
                                             "wrapped under an older KEK (manage.py rotate_keys); "
                                             "null when the current KEK is unavailable.")

    def get_versions(self, row: services.NamespaceKeys) -> int:
        return len(row.versions)


class ShreddedSerializer(serializers.Serializer):
    namespace_id = serializers.IntegerField()
    slug = serializers.CharField()
    shredded_at = serializers.DateTimeField(allow_null=True)


class EncryptionStatusSerializer(serializers.Serializer):
    provider = serializers.CharField(help_text="MEMORYWEB_KEY_PROVIDER: file, env or a "
                                     "dotted path to a KMS/Vault provider.")
    kek_id = serializers.CharField(allow_null=True, help_text="The current key-encryption "
                                   "key's id (a fingerprint, never the key); null when the "
                                   "provider has none (see problems).")
    namespaces = NamespaceKeysSerializer(many=True, help_text="Every namespace with a data key.")
    shredded = ShreddedSerializer(many=True, help_text="Destroyed keys (crypto-shredded "
                                  "namespaces), newest first.")
    problems = serializers.ListField(child=serializers.CharField(), help_text="What is wrong "
                                     "with the keys (an unreadable key store, a key that does "
                                     "not unwrap, an encrypted namespace without a key); empty "
                                     "when all is well.")


_KEK = "sha256:3f1c0b9e6a2d47c85e01b7aa"
STATUS_EXAMPLE = {
    "provider": "file", "kek_id": _KEK,
    "namespaces": [
        {"slug": "alpha", "id": 3, "in_database": True, "encrypted": True, "current_version": 2,
         "versions": 1, "version_numbers": [2], "created_at": "2026-09-01T10:00:00Z",
         "rotated_at": "2026-11-20T08:30:00Z", "key_age_days": 16, "kek_ids": [_KEK],
         "rewrap_needed": False},
        {"slug": "old-team", "id": 7, "in_database": False, "encrypted": False,
         "current_version": 1, "versions": 1, "version_numbers": [1],
         "created_at": "2026-10-02T09:00:00Z", "rotated_at": None, "key_age_days": 65,
         "kek_ids": [_KEK], "rewrap_needed": False}],
    "shredded": [{"namespace_id": 5, "slug": "gone", "shredded_at": "2026-11-30T12:00:00Z"}],
    "problems": [],
}


class EncryptionStatusView(KnownQueryParams, APIView):
    """Which namespaces are encrypted, how old their keys are, when they were last rotated
    and under which KEK; a key store that cannot be read is reported in ``problems``."""

    @extend_schema(summary="Encryption at rest: the key provider, its KEK id, each "
                   "namespace's data keys and the shredded ones (system admin)",
                   responses=EncryptionStatusSerializer,
                   examples=[OpenApiExample("Two keyed namespaces, one deleted",
                                            value=STATUS_EXAMPLE, response_only=True)])
    def get(self, request):
        found = services.report(request.user)
        return Response(EncryptionStatusSerializer(found).data)


class SinceField(serializers.DateTimeField):
    """A date-time compared in UTC. One at the calendar's edge that UTC cannot hold (year 1
    east of Greenwich, year 9999 west) is before or after every entry, not a 400: the
    schema calls it valid, and it is a valid bound."""

    def enforce_timezone(self, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            edge = dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max
            return edge.replace(tzinfo=dt.UTC)


class LedgerQuery(StrictSerializer):
    kind = serializers.ChoiceField(choices=list(erasure_ledger.KINDS), required=False,
                                   help_text="Only this kind of entry.")
    since = SinceField(required=False, help_text="Entries made at or after this time (UTC "
                       "when it names no offset).")
    namespace = serializers.CharField(required=False, max_length=64,
                                      help_text="Entries about this namespace slug (a "
                                      "deleted namespace's too).")


class LedgerEntrySerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="Position in the hash chain (1, 2, 3…).")
    id = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)
    kind = serializers.ChoiceField(choices=list(erasure_ledger.KINDS))
    namespace_slug = serializers.CharField()
    namespace_id = serializers.IntegerField(allow_null=True)
    memories = serializers.IntegerField(help_text="How many memories it erased (their ids "
                                        "are not shown).")
    selector_fields = serializers.ListField(
        child=serializers.CharField(), help_text="Which fields named the subject (their "
        "values are kept only as keyed hashes, and not shown).")
    through = serializers.DateTimeField(allow_null=True, help_text="An erasure by agent or "
                                        "session: the rows made up to this time.")
    request = serializers.CharField(allow_null=True, help_text="The erasure request's id.")
    certificate_sha256 = serializers.CharField(allow_null=True)
    audit_seq = serializers.IntegerField(allow_null=True, help_text="The change's audit entry.")
    hash = serializers.CharField(help_text="This entry's SHA-256 in the chain.")


#: One entry (drf-spectacular wraps a list's example in the page: count, next, results).
LEDGER_EXAMPLE = {"seq": 1, "id": "6f0e2b9c-1d7a-4d0e-9a55-2b8f3e4c1a77",
                 "at": "2026-12-01T09:15:02Z", "kind": "erasure", "namespace_slug": "alpha",
                 "namespace_id": 3, "memories": 2, "selector_fields": ["subject_id"],
                 "through": None, "request": "0b9d7d0e-5c1e-4e8f-8a3b-1f2d3c4b5a69",
                 "certificate_sha256": "9c1d" + "0" * 60, "audit_seq": 42,
                 "hash": "5e7a" + "0" * 60}


class ErasureLedgerView(KnownQueryParams, GenericAPIView):
    """The ledger newest first, paginated like every list (``limit``/``offset``)."""

    query_params = {*LedgerQuery().fields, "limit", "offset"}
    serializer_class = LedgerEntrySerializer
    filter_backends: list = []

    @extend_schema(summary="The erasure ledger, newest first: executed erasures, retention "
                   "expiries and namespace deletions (system admin)",
                   parameters=[LedgerQuery], responses=LedgerEntrySerializer(many=True),
                   examples=[OpenApiExample("One erasure", value=LEDGER_EXAMPLE,
                                            response_only=True)])
    def get(self, request):
        services.require_system_admin(request.user, "the erasure ledger")  # 403 before 400
        query: dict[str, Any] = validate(LedgerQuery, {
            name: value for name, value in request.query_params.items()
            if name in LedgerQuery().fields})
        entries = services.ledger_entries(request.user, **query)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(LedgerEntrySerializer(page, many=True).data)
