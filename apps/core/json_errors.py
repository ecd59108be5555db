"""Errors are JSON for API clients, in every mode; people's pages keep their HTML.

Which paths are the API's: ``/api/``, ``/mcp`` and the drop-in doors' prefixes
(``MEMORYWEB_CMM_PREFIX``, ``MEMORYWEB_MEMORYOSS_PREFIX``). A door mounted at the root (an
empty prefix) owns every path outside the HTML areas (``/admin/``, ``/accounts/``, static
files): a seed 000 client calling ``/ingest`` on a server that has the door at its root
cannot be told from one calling a misspelt route, so such a 404 must be JSON too.

Django answers some errors before any DRF view runs, in HTML: an unknown path (the
technical 404 page with DEBUG on; ``handler404`` covers DEBUG off), a method a plain view
does not allow, a CSRF refusal. :class:`JsonApiErrorsMiddleware` rewrites those, on API
paths, into the error envelope. A 500 with DEBUG on keeps Django's debug page (DEBUG is
for development); with DEBUG off ``handler500`` answers JSON already.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

#: Error codes by status for errors Django (not DRF) answered.
_CODES = {400: "invalid", 401: "not_authenticated", 403: "permission_denied",
          404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
          415: "unsupported_media_type", 500: "server_error"}


def _html_area(path: str) -> bool:
    """People's pages: the dashboard (admin), login (accounts), static files, the root."""
    areas = ("admin", "accounts", settings.STATIC_URL.strip("/"))
    head = path.strip("/").split("/", 1)[0]
    return path.strip("/") == "" or head in areas


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to an API door (see the module docstring)."""
    doors = (settings.MEMORYWEB_CMM_PREFIX, settings.MEMORYWEB_MEMORYOSS_PREFIX)
    if "" in doors:  # a door at the root owns every path but the HTML areas
        return not _html_area(path)
    relative = path.lstrip("/")
    prefixes = ["api/", "mcp/", *(door for door in doors if door)]
    return any(relative.startswith(prefix) or relative == prefix.rstrip("/")
               for prefix in prefixes)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


class JsonApiErrorsMiddleware:
    """Rewrite Django's non-JSON error answers on API paths into the error envelope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        status = response.status_code
        if (status < 400 or _is_json(response) or getattr(response, "streaming", False)
                or not is_api_path(request.path)
                or (status >= 500 and settings.DEBUG)):  # keep the debug page for developers
            return response
        from apps.core.errors import error_response

        if status == 404:
            message = f"No route for {request.path}."
        elif status == 405:
            allowed = response.get("Allow", "")
            message = f"Method {request.method} is not allowed here" + (
                f"; use {allowed}." if allowed else ".")
        else:
            message = response.reason_phrase or "Request refused."
        replaced = error_response(status, _CODES.get(status, "error"), message)
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in response:
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An encrypted namespace's data that cannot be read (a key missing or destroyed, a
        ciphertext that does not open) is a 503 naming why at every door that is not DRF
        (whose handler says the same), the dashboard included — never a bare 500."""
        from apps.core.errors import error_response, sealed_data_error

        refusal = sealed_data_error(exception)
        if refusal is None:
            return None
        if is_api_path(request.path):
            return error_response(refusal.status, refusal.code, refusal.message)
        return HttpResponse(refusal.message, status=refusal.status,
                            content_type="text/plain; charset=utf-8")
