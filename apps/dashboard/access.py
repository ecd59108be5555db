"""Who may use the dashboard, and the Principal every dashboard view acts as.

The dashboard is for team admins (of at least one namespace) and system admins
(superusers). A person's rights come from their namespace memberships, not from the
``is_staff`` flag, so granting a team-admin role is all it takes, and removing it
closes the dashboard at the next request.
"""

from __future__ import annotations

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


def is_dashboard_user(request: HttpRequest) -> bool:
    """A system admin, or a team admin of some namespace."""
    principal = principal_for(request)
    return principal is not None and (
        principal.is_system_admin or bool(principal.namespace_ids(Action.MANAGE)))
