"""The dashboard's per-namespace gateway settings page (issue 22, item 6).

One page per namespace the person manages: its memory mode (``memory_mode``, the
memories app's rule, apps/memories/memory_modes.py), its trace level and upstreams (its
``gateway`` setting, apps/gateway/namespace_setting.py), and what the gateway learned
there (quarantined / promoted / rejected facts, exchanges waiting to be learned from),
linking the quarantine review filtered to it.

Every change goes through ``apps.tenancy.namespaces.update``, as ``PATCH
/api/v1/namespaces/{slug}``: validated, audited, and the upstreams refused (403) to
anyone but a system admin. A team admin sees the upstreams read-only — the URL and the key
file's *name*; the key itself never enters the database nor this page. GET never writes;
the form is a CSRF-checked POST answered by a redirect (POST-redirect-GET).

The pages are mounted under the quarantine review's admin (apps/gateway/admin.py), since
the dashboard's own URLs belong to a sibling layer this app may not import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.gateway import learning
from apps.gateway.models import FactState, NamespaceGatewaySettings
from apps.gateway.namespace_setting import PROVIDERS, TRACE_LEVELS, trace_level, upstreams_of
from apps.memories.memory_modes import DEFAULT_MODE, MODES
from apps.tenancy import namespaces
from apps.tenancy.admin_base import ScopedAdmin
from apps.tenancy.models import Namespace
from apps.tenancy.people import principal_for
from apps.tenancy.principal import Principal

TRACE_WORDS = {"off": "off — no trace is kept",
               "metadata": "metadata — memory ids, counts, mode, timings; no text",
               "content": "content — also the recall query (redacted)"}


class SettingsForm(forms.Form):
    """The page's form; the upstream fields are disabled (shown, never taken from the
    POST) for anyone but a system admin."""

    mode = forms.ChoiceField(label="Memory mode", choices=[(m, m) for m in MODES],
                             help_text="full: recall and store; readonly: recall only; after: "
                             "recall memories stored on or after the date, and store; off: "
                             "pass-through.")
    allow_client_control = forms.BooleanField(
        required=False, label="Clients may choose (X-Memory-Mode / X-Memory-After)")
    after = forms.DateField(required=False, label="After (YYYY-MM-DD)",
                            widget=forms.DateInput(attrs={"type": "date"}))
    trace = forms.ChoiceField(label="Request traces",
                              choices=[(level, TRACE_WORDS[level]) for level in TRACE_LEVELS])

    def __init__(self, *args: Any, system: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for provider in PROVIDERS:
            self.fields[f"{provider}_url"] = forms.CharField(
                required=False, label=f"{provider} upstream URL", disabled=not system,
                max_length=2000)
            self.fields[f"{provider}_key_file"] = forms.CharField(
                required=False, label=f"{provider} key file (a name in MEMORYWEB_GATEWAY_KEY_DIR)",
                disabled=not system, max_length=255)


def initial(namespace: Namespace) -> dict[str, Any]:
    """The form's values from the stored settings (their defaults when unset)."""
    mode = namespace.memory_mode or {}
    values: dict[str, Any] = {
        "mode": mode.get("default", DEFAULT_MODE),
        "allow_client_control": mode.get("allow_client_control", True),
        "after": mode.get("after") or None, "trace": trace_level(namespace)}
    upstreams = upstreams_of(namespace.gateway)
    for provider in PROVIDERS:
        part = upstreams.get(provider) or {}
        values[f"{provider}_url"] = part.get("url", "")
        values[f"{provider}_key_file"] = part.get("key_file", "")
    return values


def changes(namespace: Namespace, cleaned: dict[str, Any], system: bool) -> dict[str, Any]:
    """The ``namespaces.update`` data for what the form changed (nothing unchanged is sent,
    so a team admin's save never touches the upstreams)."""
    data: dict[str, Any] = {}
    mode: dict[str, Any] = {"default": cleaned["mode"],
                            "allow_client_control": cleaned["allow_client_control"]}
    if cleaned.get("after"):
        mode["after"] = cleaned["after"].isoformat()
    now = initial(namespace)
    if (mode["default"], mode["allow_client_control"], mode.get("after")) != (
            now["mode"], now["allow_client_control"], now["after"]):
        data["memory_mode"] = mode
    upstreams = upstreams_of(namespace.gateway)
    if system:
        upstreams = {}
        for provider in PROVIDERS:
            part = {name: cleaned[f"{provider}_{name}"].strip() for name in ("url", "key_file")
                    if cleaned.get(f"{provider}_{name}", "").strip()}
            if part:
                upstreams[provider] = part
    gateway: dict[str, Any] = {}
    if upstreams:
        gateway["upstreams"] = upstreams
    if cleaned["trace"] != "off":
        gateway["trace"] = cleaned["trace"]
    if gateway != (namespace.gateway or {}):
        data["gateway"] = gateway
    return data


def counts(namespace: Namespace) -> dict[str, int]:
    """What the gateway learned in the namespace, through the learning services."""
    found = {state: learning.facts_of(namespace, [state]) for state in FactState.values}
    found["pending"] = learning.pending_count(namespace)
    return found


def _principal(request: HttpRequest) -> Principal:
    principal = principal_for(request)
    if principal is None:  # the site's admin_view has already required a login
        raise Http404("not logged in")
    return principal


def managed(request: HttpRequest) -> Any:
    """The namespaces the person manages (all, for a system admin), by slug."""
    return Namespace.objects.for_principal(_principal(request), Action.MANAGE).order_by("slug")


def review_url(namespace: Namespace, state: str = FactState.QUARANTINED) -> str:
    return (reverse("admin:gateway_learnedfact_changelist") + "?"
            + urlencode({"namespace": namespace.pk, "state": state}))


def urls(model_admin: Any) -> list[URLPattern]:
    """The pages, under the quarantine review's admin URLs."""
    site = model_admin.admin_site

    def index(request: HttpRequest) -> HttpResponse:
        """Every namespace the person manages, with its mode, trace level and quarantine."""
        rows = [{"namespace": ns, "mode": initial(ns)["mode"], "trace": trace_level(ns),
                 "quarantined": learning.facts_of(ns, [FactState.QUARANTINED]),
                 "url": reverse("admin:gateway_settings", args=[ns.slug])}
                for ns in managed(request)]
        return TemplateResponse(request, "admin/gateway/settings_index.html", {
            **site.each_context(request), "title": "Gateway settings", "rows": rows})

    def page(request: HttpRequest, slug: str) -> HttpResponse:
        namespace = managed(request).filter(slug=slug).first()
        if namespace is None:  # another tenant's, or one the person only reads
            raise Http404("namespace not found.")
        principal = _principal(request)
        system = principal.is_system_admin
        status = 200
        if request.method == "POST":
            form = SettingsForm(request.POST, initial=initial(namespace), system=system)
            if form.is_valid():
                data = changes(namespace, form.cleaned_data, system)
                if not data:
                    messages.info(request, "Nothing changed.")
                    return HttpResponseRedirect(request.path)
                try:
                    namespaces.update(principal, namespace.slug, data)
                except ServiceError as exc:
                    where = f" ({exc.field})" if exc.field else ""
                    form.add_error(None, f"{exc.message}{where}")
                    status = exc.status
                else:
                    messages.success(request, f"Gateway settings of {namespace.slug} saved: "
                                              f"{', '.join(sorted(data))}.")
                    return HttpResponseRedirect(request.path)
            else:
                status = 400
        else:
            form = SettingsForm(initial=initial(namespace), system=system)
        return TemplateResponse(request, "admin/gateway/settings.html", {
            **site.each_context(request), "title": f"Gateway settings of {namespace.slug}",
            "namespace": namespace, "form": form, "system": system, "counts": counts(namespace),
            "review_url": review_url(namespace),
            "links": {state: review_url(namespace, state) for state in FactState.values},
            "extra_links": extra_links(namespace),
            "upstream_fields": [(form[f"{p}_url"], form[f"{p}_key_file"]) for p in PROVIDERS],
        }, status=status)

    return [path("settings/", site.admin_view(index), name="gateway_settings_index"),
            path("settings/<slug:slug>/", site.admin_view(page), name="gateway_settings")]


@admin.register(NamespaceGatewaySettings)
class GatewaySettingsAdmin(ScopedAdmin):
    """*Gateway settings* in the dashboard's index and sidebar: its list is the settings
    index, a namespace's row its settings page (redirects; nothing is edited here)."""

    scope_action = Action.MANAGE

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("admin:gateway_settings_index"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        namespace = self.get_object(request, object_id)
        if namespace is None:
            raise Http404("namespace not found.")
        return HttpResponseRedirect(reverse("admin:gateway_settings", args=[namespace.slug]))


#: Other per-namespace gateway pages to link from the settings page: (title, url of a
#: namespace). The traces list adds itself (apps/gateway/admin_traces.py).
EXTRA_LINKS: list[tuple[str, Callable[[Namespace], str]]] = []


def extra_links(namespace: Namespace) -> list[tuple[str, str]]:
    return [(title, url(namespace)) for title, url in EXTRA_LINKS]
