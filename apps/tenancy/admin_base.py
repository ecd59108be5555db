"""Admin base classes shared by the apps: every list is cut to the person's namespaces.

Team admins see and change rows of the namespaces they manage; system admins see all.
The scope comes from the model's ``for_principal`` queryset, the same entry point the
REST API uses (apps/core/scoping.py), so the admin cannot show more than the API.
An object outside the scope is not found (the admin answers "doesn't exist").
"""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from apps.core.parsers import BoundedJSONFormField
from apps.core.roles import Action
from apps.tenancy.models import Namespace
from apps.tenancy.people import principal_for
from apps.tenancy.principal import Principal


class ScopedAdmin(admin.ModelAdmin):
    #: The action a team admin's role must allow in a row's namespace to see and change it.
    scope_action = Action.MANAGE
    #: Rows are added here by system admins only (for example namespaces).
    system_only_add = False
    #: Rows are deleted here by system admins only.
    system_only_delete = False
    #: JSON boxes (metadata, recall settings) refuse text nested past the API's limit.
    formfield_overrides = {models.JSONField: {"form_class": BoundedJSONFormField}}

    def principal(self, request) -> Principal:
        principal = principal_for(request)
        if principal is None:  # the site's admin_view has already required a login
            raise PermissionError("not logged in")
        return principal

    def get_queryset(self, request):
        return super().get_queryset(request).for_principal(self.principal(request), self.scope_action)

    def has_module_permission(self, request) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return self.has_module_permission(request) and (
            not self.system_only_add or self.principal(request).is_system_admin)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request) and (
            not self.system_only_delete or self.principal(request).is_system_admin)


class SystemAdminOnly(ScopedAdmin):
    """Visible to system admins only (operational tables with no tenant meaning)."""

    def has_module_permission(self, request) -> bool:
        principal = principal_for(request)
        return principal is not None and principal.is_system_admin


class ReadOnlyAdmin(ScopedAdmin):
    """Records that only their services write (audit entries, erasure requests): viewable
    in scope, never added, changed or deleted here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def namespace_id_param(value: str | None) -> int | None:
    """A list's ``?namespace=`` as a namespace id, or None when it cannot be one: ASCII
    digits only ("²" is a digit to ``str.isdigit`` but not a number to ``int``) and at most
    18 of them (longer overflows SQLite's integer and passes Python's digit limit)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


class NamespaceFilter(admin.SimpleListFilter):
    """Rows of one namespace; the choices are only the namespaces the viewer may see, so
    the list of choices leaks no other tenant's slug. Shared by the memory and audit lists."""

    title = "namespace"
    parameter_name = "namespace"

    def lookups(self, request, model_admin):
        principal = model_admin.principal(request)
        return [(str(pk), slug) for pk, slug in Namespace.objects.for_principal(
            principal, model_admin.scope_action).order_by("slug").values_list("pk", "slug")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        picked = namespace_id_param(self.value())
        # a hand-typed ?namespace=abc (or ²) finds nothing, not a 500
        return queryset.none() if picked is None else queryset.filter(namespace_id=picked)
