"""The page a logged-in person without a dashboard role sees (instead of a bare 403).

The dashboard serves team admins and system admins (apps/dashboard/access.py). A reader,
an agent or a person with no membership who logs in is sent to the admin's login page,
which used to raise PermissionDenied: an unstyled "403 Forbidden" with no reason and no
way to log out. This page says which roles they hold, what the dashboard needs, and
leads on: log out, their pending invitations, two-factor settings. It is still a 403,
and it shows nothing from any namespace beyond the person's own role names.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.roles import Role
from apps.tenancy import invitations
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal


def held_roles(principal: Principal | None) -> list[tuple[str, str]]:
    """(role, namespace slug) for every membership, by slug: what the person may know."""
    if principal is None:
        return []
    slugs = dict(Namespace.objects.filter(pk__in=principal.memberships)
                 .values_list("pk", "slug"))
    held = [("team admin" if role is Role.ADMIN else role.label, slugs[pk])
            for pk, role in principal.memberships.items() if pk in slugs]
    return sorted(held, key=lambda pair: pair[1])


def no_access(request: HttpRequest, principal: Principal | None) -> HttpResponse:
    """403 with the explanation (the status stays: the dashboard is refused)."""
    pending = invitations.pending_for(principal).count() if principal is not None else 0
    return render(request, "dashboard/no_access.html",
                  {"roles": held_roles(principal), "pending": pending}, status=403)
