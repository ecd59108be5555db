"""The one error format of MemoryWeb and the exceptions the service layer raises.

Every door translates a :class:`ServiceError` into its protocol: the REST API into
``{"error": {"code", "message", "field"}}`` with the error's HTTP status (see
:func:`exception_handler`), later doors (WebSocket, MCP) into their own envelopes.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response


class ServiceError(Exception):
    """A refusal the caller can act on; carries a stable code and an HTTP status."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        return envelope(self.code, self.message, self.field)


class InvalidInput(ServiceError):
    status = 400
    code = "invalid"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class PermissionDenied(ServiceError):
    """The principal can see the namespace but its role does not allow the action."""

    status = 403
    code = "permission_denied"


class NotFound(ServiceError):
    """Missing, or belongs to a namespace the principal cannot see (never say which)."""

    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"


def envelope(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "field"?}}``: the body of every error MemoryWeb sends."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    return JsonResponse(envelope(code, message, field), status=status)


def flatten_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """Flatten DRF's nested ValidationError detail to (field path, message, code)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # an item of a list field
                return flatten_validation_error(value, f"{prefix}[{key}]")
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            return flatten_validation_error(value, path)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                if isinstance(value, dict):
                    return flatten_validation_error(value, f"{prefix}[{index}]")
                return flatten_validation_error(value, prefix)
            if value:
                return flatten_validation_error(value, prefix)
    code = getattr(detail, "code", None) or "invalid"
    message = str(detail)
    if prefix and message.startswith("This field"):
        message = f"{prefix}: {message}"
    # "required", "null", "blank" are all the same to a client: the value is invalid.
    return (prefix or None, message, "invalid" if code in _GENERIC_CODES else code)


_GENERIC_CODES = {"required", "null", "blank", "invalid"}


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "parse_error",
}


def sealed_data_error(exc: BaseException) -> Unavailable | None:
    """An encrypted namespace's data that cannot be read (docs/encryption.md) as a 503
    naming why — a key that is missing, destroyed or under another KEK, or a ciphertext
    that does not open (changed, or moved from another row) — never garbage, never a 500
    without a word."""
    from apps.core.envelope import Undecryptable
    from apps.core.key_providers import KeyUnavailable

    if isinstance(exc, KeyUnavailable):
        return Unavailable(f"this namespace's encryption key is not available: {exc}",
                           code="key_unavailable")
    if isinstance(exc, Undecryptable):
        return Unavailable(f"stored data of this namespace could not be decrypted: {exc}",
                           code="undecryptable")
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every API error leaves as the MemoryWeb error envelope."""
    from django.core.exceptions import RequestDataTooBig
    from rest_framework.views import exception_handler as drf_exception_handler  # no import cycle

    if isinstance(exc, ServiceError):
        return Response(exc.as_dict(), status=exc.status)
    sealed = sealed_data_error(exc)
    if sealed is not None:
        return Response(sealed.as_dict(), status=sealed.status)
    if isinstance(exc, RequestDataTooBig):
        err = PayloadTooLarge("Request body is larger than the limit.", field=None)
        return Response(err.as_dict(), status=err.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        field, message, code = flatten_validation_error(exc.detail)
        response.data = envelope(code, message, field)
        return response
    code = _DRF_CODES.get(type(exc), getattr(exc, "default_code", "error"))
    detail = exc.detail if isinstance(exc, drf_exceptions.APIException) else str(exc)
    response.data = envelope(code, str(detail))
    if response.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="memoryweb"'
    return response


def _is_api(path: str) -> bool:
    """The API doors' paths, the drop-in ones at the root included (apps/core/json_errors.py)."""
    from apps.core.json_errors import is_api_path

    return is_api_path(path)


def not_found_view(request: HttpRequest, exception: Exception | None = None):
    """JSON 404 for API paths; Django's page elsewhere."""
    if _is_api(request.path):
        return error_response(404, "not_found", f"No route for {request.path}.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error_view(request: HttpRequest):
    if _is_api(request.path):
        return error_response(500, "server_error", "Internal error; it has been logged.")
    from django.views.defaults import server_error

    return server_error(request)
