"""Top-level URL map: dashboard (admin), people's login, health probes, REST API v1,
OpenAPI schema and docs, and the drop-in routes of replaced servers."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.compat import urls as compat_urls
from apps.core.errors import not_found_view
from apps.dashboard.invitations import invitations_page

urlpatterns = [
    path("admin/", admin.site.urls),
    # The invited person's page sits with the account pages (apps/dashboard/invitations.py).
    path("accounts/invitations/", invitations_page, name="account_invitations"),
    path("accounts/", include("allauth.urls")),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("", include("apps.server.urls")),
    path("api/v1/", include("apps.memories.api.urls")),
    path("api/v1/", include("apps.tenancy.api.urls")),
    path("api/v1/", include("apps.privacy.api.audit_urls")),
    path("api/v1/", include("apps.privacy.api.urls")),
    path("api/v1/", include("apps.timeline.api.urls")),
    path("api/v1/", include("apps.lifecycle.api.urls")),
    path("api/v1/", include("apps.lifecycle.api.consolidation_urls")),
    path("api/v1/", include("apps.lifecycle.api.merge_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Unknown API paths answer the JSON error envelope, also with DEBUG on.
    re_path(r"^api/", not_found_view),
]

# Drop-in routes for clients of the servers MemoryWeb replaces (docs/integrations.md),
# after MemoryWeb's own: with an empty prefix, /health stays MemoryWeb's.
for _prefix, _patterns, _namespace in (
        (settings.MEMORYWEB_CMM_PREFIX, compat_urls.cmm_patterns, "cmm"),
        (settings.MEMORYWEB_MEMORYOSS_PREFIX, compat_urls.memoryoss_patterns, "memoryoss")):
    if _prefix is not None:
        urlpatterns.append(path(_prefix, include((_patterns, _namespace))))

handler404 = "apps.core.errors.not_found_view"
handler500 = "apps.core.errors.server_error_view"
