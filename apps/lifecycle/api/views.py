"""REST door to the lifecycle: translate HTTP <-> apps/lifecycle services, nothing more."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.lifecycle import digest
from apps.lifecycle.api.doors import digest_errors, with_retry_after
from apps.lifecycle.api.serializers import DigestSerializer


class EndOfDayView(KnownQueryParams, APIView):
    """The day's digest of a namespace (or of one agent): the timeline's day node with its
    grips, built now for that day only (team admin)."""

    @extend_schema(
        summary="End-of-day digest: build one day's summary with grips to its sources "
                "(team admin)",
        description="Builds that day's timeline node (its segments and the day; not the "
                    "week, month or year above) and answers it with its grips. The same "
                    "day with nothing new builds nothing (`built` false, the same node). "
                    "A day with no memories answers `empty` true. 409 `busy` (with "
                    "`Retry-After`) while another build holds the timeline.",
        request=digest.EndOfDayInput,
        responses={200: DigestSerializer, **digest_errors()})
    def post(self, request, slug: str):
        found = digest.end_of_day(request.user, slug, **digest.parse_body(request.data))
        return Response(digest.digest_row(found))

    def handle_exception(self, exc):
        return with_retry_after(super().handle_exception(exc), exc)
