"""The DRF filter backend that scopes every list to what the caller may see."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from rest_framework.filters import BaseFilterBackend

from apps.core.roles import Action


class PrincipalScopeFilter(BaseFilterBackend):
    """Apply ``queryset.for_principal(request.user, READ)`` to every generic view's list.

    First in DEFAULT_FILTER_BACKENDS, so a list view added later is scoped even if its
    author forgets: a queryset whose model has no ``for_principal`` is a configuration
    error, not an unscoped list. Services scope too (defence in depth); applying the
    scope twice costs one more ``namespace_id IN (...)`` condition.
    """

    def filter_queryset(self, request, queryset, view):
        scope = getattr(queryset, "for_principal", None)
        if scope is None:
            raise ImproperlyConfigured(
                f"{type(view).__name__} lists {queryset.model.__name__}, which has no "
                "for_principal(): tenant scoping cannot be applied.")
        return scope(request.user, Action.READ)
