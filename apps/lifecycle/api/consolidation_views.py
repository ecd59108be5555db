"""REST door to consolidation: translate HTTP <-> apps/lifecycle/consolidation.py."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import ErrorSerializer
from apps.core.query_params import KnownQueryParams
from apps.lifecycle import consolidation, consolidation_jobs, kept_apart
from apps.lifecycle.representation import outcome_row, unmerged_row


class ProposalSerializer(serializers.Serializer):
    members = serializers.ListField(child=serializers.UUIDField())
    survivor = serializers.UUIDField(help_text="The member that stays current and says it.")
    merged_content = serializers.CharField(help_text="What the merged memory says: the "
                                           "survivor's text, or the summarizer's "
                                           "(merged_text summary).")
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
    merged_text = serializers.ChoiceField(choices=["member", "summary"],
                                          help_text="What the merged memories say.")
    merged_text_error = serializers.CharField(
        required=False, help_text="A queued dry run's result only: why its merged texts "
        "are the survivors' own (the summarizer is not asked on reading, or failed).")
    candidates = serializers.IntegerField(help_text="Memories considered.")
    pairs_checked = serializers.IntegerField(help_text="Neighbour pairs compared (about 20 "
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


class ProgressSerializer(serializers.Serializer):
    stage = serializers.CharField(help_text="vectors, neighbours, summaries (merged_text "
                                  "summary), apply (empty: not started).")
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class ConsolidationRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    namespace = serializers.CharField()
    dry_run = serializers.BooleanField()
    state = serializers.ChoiceField(choices=["queued", "running", "done", "failed"])
    candidates = serializers.IntegerField(help_text="Memories matched when it was asked for.")
    progress = ProgressSerializer()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    result = OutcomeSerializer(allow_null=True, help_text="Once done: what the request "
                               "would have answered (proposals naming a memory erased "
                               "since are left out).")


class ConsolidateView(KnownQueryParams, APIView):
    """Merge the memories of a namespace that say the same thing (team admin): a dry run
    (the default) proposes; applied, each group's best member stays and the others are
    superseded by it, reversibly (docs/lifecycle.md). A large one runs as a job."""

    query_params: set[str] = set()

    @extend_schema(
        summary="Consolidate a namespace: propose (dry run) or merge near-identical memories",
        description="Up to MEMORYWEB_CONSOLIDATE_INLINE_MAX matching memories are "
                    "consolidated within the request (200, the outcome). More answer 202 "
                    "with the run to poll (`Location`: GET /api/v1/consolidations/{id}); "
                    "one run at a time per namespace (409).",
        request=consolidation.ConsolidateInput,
        responses={200: OutcomeSerializer, 202: ConsolidationRunSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="The namespace is "
                                        "archived, or a consolidation of it is queued or "
                                        "running."),
                   503: OpenApiResponse(ErrorSerializer, description="The embedding model "
                                        "or the summarizer (merged_text summary) failed: "
                                        "nothing was merged.")})
    def post(self, request, slug: str):
        found = consolidation_jobs.consolidate_or_queue(
            request.user, slug, request.data, limit=settings.MEMORYWEB_CONSOLIDATE_MAX)
        if isinstance(found, consolidation.Outcome):
            return Response(outcome_row(found))
        response = Response(consolidation_jobs.run_row(found), status=202)
        response["Location"] = reverse("lifecycle-consolidation:run", args=[found.pk])
        return response


class ConsolidationRunView(KnownQueryParams, APIView):
    """A consolidation run as a job: its state, progress and, once done, its outcome
    (team admin of its namespace; another tenant's is a 404)."""

    query_params: set[str] = set()

    @extend_schema(summary="A consolidation run: state, progress, outcome",
                   responses=ConsolidationRunSerializer)
    def get(self, request, pk: str):
        return Response(consolidation_jobs.run_row(consolidation_jobs.get(request.user, pk)))


class UnmergeView(KnownQueryParams, APIView):
    """Undo a merge (team admin): a survivor's merged memories, or one superseded memory,
    are current again."""

    query_params: set[str] = set()

    @extend_schema(summary="Unmerge: make superseded memories current again", request=None,
                   responses=UnmergedSerializer)
    def post(self, request, pk: str):
        return Response(unmerged_row(consolidation.unmerge(request.user, pk)))


class KeptApartSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    members = serializers.ListField(child=serializers.UUIDField())
    pairs = serializers.IntegerField(help_text="Links added (keep-apart) or removed "
                                     "(allow-together); 0 when nothing changed.")


KEPT_APART_RESPONSES = {
    200: KeptApartSerializer,
    400: OpenApiResponse(ErrorSerializer, description="members: not 2 to 20 distinct ids."),
    404: OpenApiResponse(ErrorSerializer, description="A memory is not one of the "
                         "namespace's (or the namespace is not the caller's)."),
    409: OpenApiResponse(ErrorSerializer, description="The namespace is archived."),
}


class KeepApartView(KnownQueryParams, APIView):
    """Keep memories apart (team admin): a person's rejection of a consolidation proposal,
    kept. Consolidation never groups two of them again (every door, the schedule);
    ``merge`` refuses them (docs/lifecycle.md, "Kept apart")."""

    query_params: set[str] = set()
    apart = True

    @extend_schema(summary="Keep memories apart: consolidation never merges two of them",
                   request=kept_apart.KeepApartInput, responses=KEPT_APART_RESPONSES)
    def post(self, request, slug: str):
        members, pairs = kept_apart.keep_apart(request.user, slug, request.data,
                                               apart=self.apart)
        return Response({"namespace": slug, "members": members, "pairs": pairs})


class AllowTogetherView(KeepApartView):
    """Undo a keep-apart (team admin): consolidation may group these memories again."""

    apart = False

    @extend_schema(summary="Allow memories kept apart to be merged again",
                   request=kept_apart.KeepApartInput, responses=KEPT_APART_RESPONSES)
    def post(self, request, slug: str):
        return super().post(request, slug)
