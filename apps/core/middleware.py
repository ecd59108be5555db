"""Request limits enforced before anything reads the body."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from apps.core.errors import error_response


class RequestBodyLimitMiddleware:
    """Answer 413 JSON for a declared body over ``MEMORYWEB_LIMITS['max_body_bytes']``.

    Django's own check (``DATA_UPLOAD_MAX_MEMORY_SIZE``) raises while the view reads the
    body and yields an HTML 400; refusing on ``Content-Length`` up front is cheaper and
    gives the documented error.
    Bodies without a declared length (chunked) are measured after the server buffered them.
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
        if not declared and request.method in {"POST", "PUT", "PATCH"}:
            try:  # chunked upload: Django measures it while reading
                declared = len(request.body)
            except RequestDataTooBig:
                return self._too_large("more than the limit")
        if declared > self.limit:
            return self._too_large(f"{declared} bytes")
        return self.get_response(request)

    def _too_large(self, size: str) -> HttpResponse:
        return error_response(
            413, "payload_too_large", f"Request body is {size}; the limit is {self.limit} bytes."
        )


class ServerTimingMiddleware:
    """Adds ``app;dur=<ms>`` (time inside Django) to the ``Server-Timing`` header.

    Views may already have put their own stages there (recall: embed, vector, sql), so
    a client or a benchmark can tell server time from network and queueing time.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        app = f"app;dur={(time.perf_counter() - start) * 1000:.2f}"
        stages = response.get("Server-Timing")
        response["Server-Timing"] = f"{stages}, {app}" if stages else app
        return response
