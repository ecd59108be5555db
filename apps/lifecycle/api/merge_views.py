"""REST door to namespace merge (system admin): translate HTTP <-> apps/lifecycle/namespace_merge.py."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import ErrorSerializer
from apps.core.query_params import KnownQueryParams
from apps.lifecycle import namespace_merge


class MergeReportSerializer(serializers.Serializer):
    keys_revoked = serializers.ListField(child=serializers.CharField(), help_text="The "
                                         "source's API keys (ids), revoked at the start.")
    grants_revoked = serializers.ListField(child=serializers.IntegerField(), help_text="Live "
                                           "grants to or from the source, revoked at the start.")
    source_members = serializers.ListField(child=serializers.CharField(), help_text="People "
                                           "left on the archived source: invite them to the "
                                           "target if they should keep access.")
    target_members = serializers.ListField(child=serializers.CharField(), help_text="People "
                                           "who now see the moved memories.")
    target_grantees = serializers.ListField(child=serializers.CharField(), help_text="Namespaces "
                                            "the target shares with, under their grants' scope.")
    moved_back = serializers.IntegerField(allow_null=True, required=False, help_text="After a "
                                          "revert: the memories moved back.")


class MergeDryRunSerializer(MergeReportSerializer):
    dry_run = serializers.BooleanField()
    source = serializers.CharField()
    target = serializers.CharField()
    memories = serializers.IntegerField(help_text="Memories that would move.")
    duplicates = serializers.IntegerField(help_text="Of them, whose content the target holds "
                                          "live: superseded by it on arrival.")
    refused = serializers.CharField(allow_null=True, help_text="Why the merge would be "
                                    "refused now (409), or null.")


class MergeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    source = serializers.CharField()
    target = serializers.CharField()
    state = serializers.ChoiceField(choices=["queued", "running", "done", "failed", "reverted"])
    total = serializers.IntegerField()
    moved = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    requested_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    reverted_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    report = MergeReportSerializer()


def _answer(merge, row) -> Response:
    if merge.state in ("queued", "running", "reverting"):
        response = Response(row, status=202)
        response["Location"] = reverse("lifecycle-merge:merge", args=[merge.pk])
        return response
    return Response(row)


class MergeIntoView(KnownQueryParams, APIView):
    """Move every memory of a namespace into another (system admin): the source is
    archived, its keys and grants revoked, its memories re-homed with their ids."""

    query_params: set[str] = set()

    @extend_schema(
        summary="Merge a namespace into another (system admin)",
        description="`dry_run` true reports what would happen and changes nothing. Otherwise "
                    "the source is archived, its keys and live grants revoked, and its "
                    "memories moved (ids, versions and lineage kept; a memory whose content "
                    "the target holds live is superseded by it). Up to "
                    "MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX memories are moved within the "
                    "request (200, `state` done); more answer 202 with the merge to poll "
                    "(`Location`). Reversible: `POST /api/v1/namespace-merges/{id}/revert`.",
        request=namespace_merge.MergeInput,
        responses={200: PolymorphicProxySerializer(
                       component_name="MergeIntoResult",
                       serializers=[MergeSerializer, MergeDryRunSerializer],
                       resource_type_field_name=None),
                   202: MergeSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="The source or target is "
                                        "archived, or a merge of either is running.")})
    def post(self, request, slug: str):
        merge, row = namespace_merge.merge_into(request.user, slug, request.data)
        if merge is None:
            return Response(row)
        return _answer(merge, row)


class MergeDetailView(KnownQueryParams, APIView):
    """A namespace merge's state and progress (system admin)."""

    query_params: set[str] = set()

    @extend_schema(summary="A namespace merge's state and progress (system admin)",
                   responses=MergeSerializer)
    def get(self, request, pk: str):
        merge = namespace_merge.get(request.user, pk)
        return Response(namespace_merge.status(merge))


class MergeRevertView(KnownQueryParams, APIView):
    """Move a finished merge's memories back and unarchive the source (system admin)."""

    query_params: set[str] = set()

    @extend_schema(summary="Revert a namespace merge (system admin)", request=None,
                   description="Memories move back with their ids; what the dedup superseded "
                   "is current again; the source is unarchived. Revoked keys and grants stay "
                   "revoked. 409 unless the merge is `done` or `failed`. Up to "
                   "MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX moved memories are moved back within "
                   "the request (200, `state` reverted); more answer 202 with the merge "
                   "`reverting`, to poll (`Location`).",
                   responses={200: MergeSerializer, 202: MergeSerializer,
                              409: OpenApiResponse(ErrorSerializer, description="The merge "
                                                   "is not finished, or was reverted.")})
    def post(self, request, pk: str):
        merge = namespace_merge.revert(request.user, pk)
        return _answer(merge, namespace_merge.status(merge))
