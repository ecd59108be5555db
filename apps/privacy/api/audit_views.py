"""REST door to the audit log: read-only (privacy holds the people-facing side of the
audit log; apps.audit, below every app that writes, only appends and verifies)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditEntry
from apps.core.query_params import KnownQueryParams
from apps.privacy import audit_log as services


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["seq", "created_at", "actor", "agent_id", "namespace", "operation",
                  "record_ids", "summary", "request_id", "prev_hash", "entry_hash"]
        read_only_fields = fields


class AuditPageSerializer(serializers.Serializer):
    results = AuditEntrySerializer(many=True)
    next_after_seq = serializers.IntegerField(allow_null=True, help_text="Pass as after_seq for "
                                              "the next page; null on the last page.")


class AuditListView(KnownQueryParams, APIView):
    query_params = set(services.AuditQuery().fields)

    @extend_schema(summary="Audit entries, oldest first (team admin: their namespace; system "
                   "admin: all)", parameters=[services.AuditQuery], responses=AuditPageSerializer)
    def get(self, request):
        found, limit = services.entries(request.user, request.query_params)
        page = list(found[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        return Response({"results": AuditEntrySerializer(page, many=True).data,
                         "next_after_seq": page[-1].seq if more else None})


class AuditVerifyView(KnownQueryParams, APIView):
    @extend_schema(summary="Verify the whole audit chain (system admin)", responses=inline_serializer(
        "AuditVerdict", {"intact": serializers.BooleanField(),
                         "checked": serializers.IntegerField(),
                         "last_seq": serializers.IntegerField(),
                         "broken_at": serializers.IntegerField(allow_null=True),
                         "problem": serializers.CharField(allow_null=True),
                         "notes": serializers.ListField(child=serializers.CharField())}))
    def get(self, request):
        verdict = services.check_chain(request.user)
        return Response({"intact": verdict.ok, "checked": verdict.checked,
                         "last_seq": verdict.last_seq,
                         "broken_at": verdict.broken[0] if verdict.broken else None,
                         "problem": verdict.broken[1] if verdict.broken else None,
                         "notes": verdict.notes})
