"""MemoryWeb's admin site: allauth login, access by namespace role, pages beyond CRUD."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import path, re_path, reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from apps.dashboard.access import is_dashboard_user
from apps.dashboard.no_access import no_access
from apps.tenancy.people import principal_for

#: The pages beyond CRUD: (url name, title), shown as a "Tools" section in the index and
#: the sidebar.
TOOLS = [
    ("overview", "Namespace overview"),
    ("playground", "Recall playground"),
    ("live", "Live feed"),
    ("timeline", "Timeline"),
    ("sessions", "Sessions"),
    ("consolidation", "Consolidation"),
    ("forgetting", "Forgetting"),
    ("namespace_merges", "Namespace merges"),
    ("encryption", "Encryption"),
    ("erasure_ledger", "Erasure ledger"),
]
#: Tools for system admins only: not listed for anyone else (their pages answer 403).
SYSTEM_TOOLS = frozenset({"namespace_merges", "encryption", "erasure_ledger"})


class DashboardSite(admin.AdminSite):
    site_header = "MemoryWeb"
    site_title = "MemoryWeb dashboard"
    index_title = "Dashboard"
    enable_nav_sidebar = True

    def has_permission(self, request) -> bool:
        """Team admins of any namespace and system admins; ``is_staff`` plays no part."""
        return is_dashboard_user(request)

    def login(self, request, extra_context=None):
        """The admin logs in through allauth (password, then TOTP when set up)."""
        next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            next_url = reverse("admin:index")
        if request.user.is_authenticated:
            if not self.has_permission(request):
                # Not a bare "403 Forbidden": which roles they hold, what the dashboard
                # needs, and the way out (log out, invitations, two-factor settings).
                return no_access(request, principal_for(request))
            return HttpResponseRedirect(next_url)
        return HttpResponseRedirect(f"{resolve_url(settings.LOGIN_URL)}?"
                                    f"{urlencode({REDIRECT_FIELD_NAME: next_url})}")

    def get_urls(self):
        from apps.dashboard import (
            consolidation_views,
            encryption_views,
            forgetting_views,
            merge_views,
            session_views,
            timeline_views,
            views,
        )

        pages = [
            path("dashboard/overview/", self.admin_view(views.overview), name="overview"),
            path("dashboard/playground/", self.admin_view(views.playground), name="playground"),
            path("dashboard/live/", self.admin_view(views.live_feed), name="live"),
            path("dashboard/timeline/", self.admin_view(timeline_views.timeline), name="timeline"),
            path("dashboard/timeline/rebuild/", self.admin_view(timeline_views.timeline_rebuild),
                 name="timeline_rebuild"),
            path("dashboard/sessions/", self.admin_view(session_views.sessions), name="sessions"),
            # A session id is free text (up to 128 characters; "/" and even a line break
            # included): the rest of the path, whatever it holds.
            re_path(r"^dashboard/sessions/(?P<session_id>(?s:.+))/$",
                    self.admin_view(session_views.session), name="session"),
            *consolidation_views.urls(self.admin_view),
            *forgetting_views.urls(self.admin_view),
            *merge_views.urls(self.admin_view),
            *encryption_views.urls(self.admin_view),
        ]
        return pages + super().get_urls()

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        if app_label is None or app_label == "dashboard":
            principal = principal_for(request)
            system = principal is not None and principal.is_system_admin
            tools = [(name, title) for name, title in TOOLS if system or name not in SYSTEM_TOOLS]
            apps.insert(0, {
                "name": "Tools", "app_label": "dashboard", "app_url": reverse("admin:overview"),
                "has_module_perms": True,
                "models": [{"name": title, "object_name": name, "admin_url": reverse(f"admin:{name}"),
                            "add_url": None, "view_only": True, "perms": {"view": True}}
                           for name, title in tools],
            })
        return apps
