"""What the HTTP doors of the lifecycle share (the REST route and seed 000's drop-in
route): the ``Retry-After`` of a refusal that says when to ask again, and the refusals
particular to a digest call, for the OpenAPI schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework.response import Response

from apps.core.openapi import ErrorSerializer


def with_retry_after(response: Response | None, exc: Exception) -> Response | None:
    """A refusal that says when to ask again (``digest.DigestBusy``) carries
    ``Retry-After`` (whole seconds), as a 429 does."""
    wait = getattr(exc, "retry_after", None)
    if wait is not None and response is not None:
        response["Retry-After"] = str(wait)
    return response


def digest_errors() -> dict[int, OpenApiResponse]:
    """The digest's own 409 and 503 (the shared error answers are added by
    apps/core/openapi.py; these say what they mean here)."""
    return {
        409: OpenApiResponse(ErrorSerializer, description="The namespace is archived "
                             "(`conflict`), or another build of this timeline is running "
                             "(`busy`; `Retry-After` says when to retry). Nothing was done."),
        503: OpenApiResponse(ErrorSerializer, description="The summariser failed on the day "
                             "(`unavailable`); its previous digest, if any, is kept. Retry "
                             "shortly."),
    }
