"""Who may use the dashboard, and the Principal every dashboard view acts as.

The dashboard is for team admins (of at least one namespace) and system admins
(superusers). A person's rights come from their namespace memberships, not from the
``is_staff`` flag, so granting a team-admin role is all it takes, and removing it
closes the dashboard at the next request.
"""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.http import HttpRequest

from apps.tenancy.principal import Principal
from apps.tenancy.roles import Action

_CACHE_ATTRIBUTE = "_memoryweb_principal"


def principal_for(request: HttpRequest) -> Principal | None:
    """The logged-in person as a Principal (memberships read once per request)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    cached = getattr(request, _CACHE_ATTRIBUTE, None)
    if cached is None or cached.user_id != user.pk:
        cached = Principal.for_user(user)
        setattr(request, _CACHE_ATTRIBUTE, cached)
    return cached


def needs_mfa_setup(user, principal: Principal | None = None) -> bool:
    """True while MEMORYWEB_REQUIRE_MFA is on and a team or system admin has no TOTP
    authenticator: their password-only session may do nothing but set one up (the
    dashboard, REST with the session and the live WebSocket all ask this). Once one is
    set up, allauth asks for the code before any session exists."""
    if not settings.MEMORYWEB_REQUIRE_MFA or user is None or not user.is_authenticated:
        return False
    principal = principal or Principal.for_user(user)
    if not may_use_dashboard(principal):
        return False
    return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def may_use_dashboard(principal: Principal) -> bool:
    """A system admin, or a team admin of some namespace."""
    return principal.is_system_admin or bool(principal.namespace_ids(Action.MANAGE))


def is_dashboard_user(request: HttpRequest) -> bool:
    principal = principal_for(request)
    return principal is not None and may_use_dashboard(principal)
