"""Enforce TOTP for dashboard users when MEMORYWEB_REQUIRE_MFA is on."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect

from apps.tenancy.people import dashboard_needs_mfa, principal_for

#: What a password-only session may still reach: allauth (to set up TOTP, log out),
#: static files, and the API and WebSocket (which refuse the session themselves).
OPEN_PREFIXES = ("/accounts/", "/static/", "/api/", "/ws/", "/health", "/readiness",
                 "/admin/logout/")


class RequireStaffMfaMiddleware:
    """A team or system admin without a TOTP authenticator is sent to set one up before
    any page opens; allauth then asks for the code at every login. (The pages are the
    dashboard, which serves admin roles only; the API and the WebSocket scope the rule
    per namespace themselves, apps/tenancy/mfa.py.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if (settings.MEMORYWEB_REQUIRE_MFA and not path.startswith(OPEN_PREFIXES)
                and request.user.is_authenticated
                and dashboard_needs_mfa(request.user, principal_for(request))):
            messages.warning(request, "Set up an authenticator app before using the dashboard.")
            return redirect("mfa_activate_totp")
        return self.get_response(request)
