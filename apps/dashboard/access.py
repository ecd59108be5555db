"""Who may use the dashboard, and the Principal every dashboard view acts as.

The dashboard is for team admins (of at least one namespace) and system admins
(superusers). A person's rights come from their namespace memberships, not from the
``is_staff`` flag, so granting a team-admin role is all it takes, and removing it
closes the dashboard at the next request.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.tenancy import mfa
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


def may_use_dashboard(principal: Principal) -> bool:
    """A system admin, or a team admin of some namespace (also while that role is dormant
    for want of TOTP: the middleware then sends them to set it up, and logging out of
    the dashboard keeps working)."""
    return (principal.is_system_admin or bool(principal.namespace_ids(Action.MANAGE))
            or bool(principal.dormant))


def is_dashboard_user(request: HttpRequest) -> bool:
    principal = principal_for(request)
    return principal is not None and may_use_dashboard(principal)
