"""REST door to consolidation: translate HTTP <-> apps/lifecycle/consolidation.py."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.lifecycle import consolidation
from apps.lifecycle.representation import outcome_row, unmerged_row


class ProposalSerializer(serializers.Serializer):
    members = serializers.ListField(child=serializers.UUIDField())
    survivor = serializers.UUIDField(help_text="The member that stays current and says it.")
    merged_content = serializers.CharField(help_text="What the merged memory says (the "
                                           "survivor's text).")
    tags = serializers.ListField(child=serializers.CharField(), help_text="The survivor's "
                                 "tags once merged: its own, then every other member's.")
    similarity = serializers.FloatField(help_text="Mean cosine similarity of the members.")
    min_similarity = serializers.FloatField()
    member_similarity = serializers.DictField(child=serializers.FloatField(),
                                              help_text="Each other member's to the survivor.")
    applied = serializers.BooleanField(required=False, help_text="Not a dry run: merged "
                                       "(false: a member changed meanwhile; left).")


class ConflictSerializer(serializers.Serializer):
    members = serializers.ListField(child=serializers.UUIDField())
    similarity = serializers.FloatField()
    differs_in = serializers.ListField(child=serializers.ChoiceField(
        choices=["number", "date", "name", "negation", "contrast"]))


class OutcomeSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    dry_run = serializers.BooleanField()
    threshold = serializers.FloatField()
    candidates = serializers.IntegerField(help_text="Memories considered.")
    pairs_checked = serializers.IntegerField(help_text="Neighbour pairs compared (about 10 "
                                             "per memory: never every pair).")
    proposals = ProposalSerializer(many=True)
    conflicts = ConflictSerializer(many=True, help_text="Alike but for a number, a name, a "
                                   "date or a negation: never merged (linked when applied).")
    merged = serializers.IntegerField()
    superseded = serializers.IntegerField()
    stale = serializers.IntegerField()
    conflicts_linked = serializers.IntegerField()


class UnmergedSerializer(serializers.Serializer):
    memory = serializers.DictField(help_text="The memory unmerged, as GET /api/v1/memories/{id} "
                                   "shows it.")
    released = serializers.ListField(child=serializers.UUIDField(),
                                     help_text="The memories current again.")


class ConsolidateView(KnownQueryParams, APIView):
    """Merge the memories of a namespace that say the same thing (team admin): a dry run
    (the default) proposes; applied, each group's best member stays and the others are
    superseded by it, reversibly (docs/lifecycle.md)."""

    query_params: set[str] = set()

    @extend_schema(summary="Consolidate a namespace: propose (dry run) or merge near-identical "
                   "memories", request=consolidation.ConsolidateInput, responses=OutcomeSerializer)
    def post(self, request, slug: str):
        outcome = consolidation.consolidate(request.user, slug, request.data,
                                            limit=settings.MEMORYWEB_CONSOLIDATE_MAX)
        return Response(outcome_row(outcome))


class UnmergeView(KnownQueryParams, APIView):
    """Undo a merge (team admin): a survivor's merged memories, or one superseded memory,
    are current again."""

    query_params: set[str] = set()

    @extend_schema(summary="Unmerge: make superseded memories current again", request=None,
                   responses=UnmergedSerializer)
    def post(self, request, pk: str):
        return Response(unmerged_row(consolidation.unmerge(request.user, pk)))
