"""The invited person's page (/accounts/invitations/): see, accept or decline invitations.

It sits with the account pages, not in the dashboard: the dashboard serves admin roles,
while an invitation is usually for someone who is not an admin anywhere (a reader, an
agent). It is open to any logged-in person (also before they set up TOTP: accepting a
reader role needs none, and an admin role stays dormant until they do, see
apps/tenancy/mfa.py). Answers go through apps.tenancy.invitations, like the REST routes.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.core.errors import ServiceError
from apps.tenancy import invitations
from apps.tenancy.principal import Principal


@login_required
@require_http_methods(["GET", "POST"])
def invitations_page(request: HttpRequest) -> HttpResponse:
    principal = Principal.for_user(request.user)
    if request.method == "POST":
        answer = request.POST.get("answer")
        chosen = request.POST.get("invitation")
        try:
            if answer == "accept":
                invitation = invitations.accept(principal, chosen)
                messages.success(request, f"You are now {invitation.role} in "
                                 f"{invitation.namespace.slug}.")
            elif answer == "decline":
                invitation = invitations.decline(principal, chosen)
                messages.success(request, f"Invitation to {invitation.namespace.slug} declined.")
            else:
                messages.error(request, "answer must be accept or decline.")
        except ServiceError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(request.path)
    return render(request, "dashboard/invitations.html",
                  {"invitations": list(invitations.pending_for(principal))})
