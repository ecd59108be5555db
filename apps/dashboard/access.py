"""Who may use the dashboard, and the Principal every dashboard view acts as.

The dashboard is for team admins (of at least one namespace) and system admins
(superusers). A person's rights come from their namespace memberships, not from the
``is_staff`` flag, so granting a team-admin role is all it takes, and removing it
closes the dashboard at the next request.
"""

from __future__ import annotations

from django.http import HttpRequest

from apps.core.roles import Action
from apps.tenancy.people import principal_for
from apps.tenancy.principal import Principal


def may_use_dashboard(principal: Principal) -> bool:
    """A system admin, or a team admin of some namespace (also while that role is dormant
    for want of TOTP: the middleware then sends them to set it up, and logging out of
    the dashboard keeps working)."""
    return (principal.is_system_admin or bool(principal.namespace_ids(Action.MANAGE))
            or bool(principal.dormant))


def is_dashboard_user(request: HttpRequest) -> bool:
    principal = principal_for(request)
    return principal is not None and may_use_dashboard(principal)
