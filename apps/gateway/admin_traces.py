"""The dashboard's list of gateway request traces (issue 22, item 6): read-only, scoped to
the namespaces the person manages, filtered by namespace, route, mode, level, fail-open
and agent; linked from the gateway settings page (apps/gateway/admin_settings.py).

Traces are written only by the gateway (apps/gateway/traces.py), for namespaces whose
``gateway.trace`` is not ``off``; nothing is added, changed or deleted here. The query
column is empty unless the namespace's level was ``content`` when the request came.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import Truncator

from apps.core.roles import Action
from apps.gateway import admin_settings, traces
from apps.gateway.models import GatewayTrace
from apps.tenancy.admin_base import NamespaceFilter, ReadOnlyAdmin
from apps.tenancy.models import Namespace


@admin.register(GatewayTrace)
class GatewayTraceAdmin(ReadOnlyAdmin):
    scope_action = Action.MANAGE
    list_display = ["created_at", "namespace", "api", "model", "mode", "agent_id", "injected",
                    "screened_out", "fail_open", "added_ms", "upstream_status", "query_snippet"]
    list_filter = [NamespaceFilter, "api", "mode", "level", "fail_open",
                   ("agent_id", admin.AllValuesFieldListFilter)]
    ordering = ["-created_at"]
    list_per_page = 100
    date_hierarchy = None
    readonly_fields = ["created_at", "namespace", "level", "api", "model", "mode", "agent_id",
                       "injected", "memory_ids", "screened_out", "fail_open", "added_ms",
                       "upstream_status", "query"]
    fields = readonly_fields

    def get_queryset(self, request):
        """The namespaces the person manages, within retention (an older row waiting for
        the next prune is not shown)."""
        queryset = GatewayTrace.objects.select_related("namespace").filter(
            created_at__gte=traces.cutoff())
        principal = self.principal(request)
        if principal.is_system_admin:
            return queryset
        return queryset.filter(namespace_id__in=principal.namespace_ids(self.scope_action))

    @admin.display(description="query")
    def query_snippet(self, obj: GatewayTrace) -> str:
        return Truncator(obj.query).chars(80) if obj.query else "—"


def traces_url(namespace: Namespace) -> str:
    return (reverse("admin:gateway_gatewaytrace_changelist") + "?"
            + urlencode({"namespace": namespace.pk}))


admin_settings.EXTRA_LINKS.append(("Request traces", traces_url))
