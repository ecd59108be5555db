"""Request limits enforced before anything reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core.errors import error_response


class RequestBodyLimitMiddleware:
    """Answer 413 JSON for a declared body over ``MEMORYWEB_LIMITS['max_body_bytes']``.

    Django's own check (``DATA_UPLOAD_MAX_MEMORY_SIZE``) raises while the view reads the
    body and yields an HTML 400; refusing on ``Content-Length`` up front is cheaper and
    gives the documented error. Bodies without a length are still capped by Django's
    check, which the API's exception handler also turns into 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.limit = settings.MEMORYWEB_LIMITS["max_body_bytes"]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            declared = int(length)
        except ValueError:
            return error_response(400, "invalid", "Content-Length is not a number.")
        if declared > self.limit:
            return error_response(
                413,
                "payload_too_large",
                f"Request body is {declared} bytes; the limit is {self.limit} bytes.",
            )
        return self.get_response(request)
