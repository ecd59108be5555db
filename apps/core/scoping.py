"""``for_principal``: the one queryset entry point that cuts a model to a caller's namespaces.

The API's filter backend (tenancy/filters.py), the services and the dashboard (the Django
admin) all scope through it, so a list cannot be scoped one way in REST and another way
in the admin. Rows read by primary key (where a namespace term would make SQLite walk the
namespace) apply the same rule through ``namespace_check``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from django.db import models
from django.db.models import Q

from apps.core.roles import Action


class ScopedCaller(Protocol):
    """What scoping needs of a caller (apps.tenancy.principal.Principal is one): core
    sits below tenancy, so it names the two members it uses rather than the class."""

    @property
    def is_system_admin(self) -> bool: ...

    def namespace_ids(self, action: Action) -> list[int]: ...


class NamespaceScopedQuerySet(models.QuerySet):
    """Rows that belong to a namespace through ``namespace_fields`` (any of them).

    System admins see every row, including rows of no namespace (system keys, entries
    of deleted namespaces); everyone else sees rows of the namespaces where their role
    allows ``action``.
    """

    namespace_fields: tuple[str, ...] = ("namespace_id",)

    def for_principal(self, principal: ScopedCaller, action: Action = Action.READ):
        if principal.is_system_admin:
            return self
        ids = principal.namespace_ids(action)
        if not ids:
            return self.none()
        if self.namespace_fields == ("namespace_id",) and len(ids) == 1:
            return self.filter(namespace_id=ids[0])  # the common case: one key, one namespace
        condition = Q()
        for name in self.namespace_fields:
            condition |= Q(**{f"{name}__in": ids})
        return self.filter(condition)


def namespace_check(principal: ScopedCaller, action: Action = Action.READ) -> Callable[[int], bool]:
    """``for_principal``'s rule as a test of one row's namespace id, for rows read by
    primary key: with ``namespace_id = ?`` in the statement SQLite (no statistics here)
    walks that namespace's index, every row of it, instead of the primary key."""
    if principal.is_system_admin:
        return lambda namespace_id: True
    allowed = frozenset(principal.namespace_ids(action))
    return allowed.__contains__
