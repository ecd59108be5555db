"""Enforce TOTP for dashboard users when MEMORYWEB_REQUIRE_MFA is on."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect

from apps.dashboard.access import is_dashboard_user


class RequireStaffMfaMiddleware:
    """A team or system admin without a TOTP authenticator is sent to set one up before
    any dashboard page opens. allauth then asks for the code at every login."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (settings.MEMORYWEB_REQUIRE_MFA and request.path.startswith("/admin/")
                and is_dashboard_user(request)
                and not Authenticator.objects.filter(user=request.user,
                                                     type=Authenticator.Type.TOTP).exists()):
            messages.warning(request, "Set up an authenticator app before using the dashboard.")
            return redirect("mfa_activate_totp")
        return self.get_response(request)
