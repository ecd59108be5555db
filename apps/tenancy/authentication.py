"""DRF authentication: API keys (agents) and sessions (people), both as Principals."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from apps.tenancy.people import needs_mfa_setup
from apps.tenancy.principal import Principal
from apps.tenancy.services import authenticate_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>``. A wrong key is a 401, never a fallback."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword:
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("Bearer key missing.")
        key = authenticate_key(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        return Principal.for_key(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="memoryweb"'


class PrincipalSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in person (the admin, the browsable API), with CSRF checks."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, auth = result
        principal = Principal.for_user(user)
        if needs_mfa_setup(user, principal):
            raise exceptions.PermissionDenied(
                "two-factor authentication is required: set up an authenticator at "
                "/accounts/2fa/ (or use an API key).")
        return principal, auth
