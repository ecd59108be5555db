"""DRF permission gate: authenticated principals only. Role checks live in services."""

from rest_framework.permissions import BasePermission

from apps.tenancy.principal import Principal


class IsPrincipal(BasePermission):
    message = "Authentication required: send Authorization: Bearer <key>."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Principal)
