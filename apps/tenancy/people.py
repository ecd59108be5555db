"""A logged-in person as a Principal, and what their session may do before it has a
second factor.

Used by every door a person comes through (the dashboard, REST with the session, the
live WebSocket), so it lives in tenancy, below them all, next to the memberships it
reads (Principal.for_user) and the second-factor rules (mfa.py).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.tenancy import mfa
from apps.tenancy.principal import Principal

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
    """True while the person's password-only session may do nothing at all until they set
    up TOTP: a superuser, or a person whose every role needs a second factor (REST with
    the session and the live WebSocket ask this, and refuse the whole session).

    A person who also holds a reader or agent role somewhere keeps a working session
    for it; their admin roles are dormant in their own namespaces only (the Principal
    carries them, apps/tenancy/mfa.py), so one namespace's role never changes what the
    person may do in another. Once TOTP is set up, allauth asks for the code before any
    session exists."""
    if not settings.MEMORYWEB_REQUIRE_MFA or user is None or not user.is_authenticated:
        return False
    return mfa.session_refused(user, principal or Principal.for_user(user))


def dashboard_needs_mfa(user, principal: Principal | None = None) -> bool:
    """True while someone who would use the dashboard (a superuser, or a team admin whose
    role is dormant for want of TOTP) has no authenticator: the dashboard only serves
    admin roles, so its pages send them to set one up first."""
    if not settings.MEMORYWEB_REQUIRE_MFA or user is None or not user.is_authenticated:
        return False
    principal = principal or Principal.for_user(user)
    if principal.is_system_admin:
        return not mfa.has_totp(user)
    return bool(principal.dormant)
