"""Namespace membership for people: roles held as django-guardian object permissions.

A member's role in a namespace is the bundle of object permissions they hold on it
(``roles.ROLE_PERMISSIONS``); setting a role replaces the bundle. System admins are
superusers and need no membership. Only permissions granted to the user directly
count (not through groups), so one query tells every role a user has.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from apps.core.errors import InvalidInput
from apps.tenancy.models import Namespace
from apps.tenancy.roles import ACTION_PERMISSION, ROLE_PERMISSIONS, Role, role_from_permissions

ALL_PERMISSIONS = frozenset(ACTION_PERMISSION.values())


def set_role(namespace: Namespace, user, role: Role | None) -> None:
    """Make ``user`` a member of ``namespace`` with ``role`` (None: no longer a member)."""
    if role is not None and role not in ROLE_PERMISSIONS:
        raise InvalidInput(f"a member's role is reader, agent or admin, not {role.label}.",
                           field="role")
    wanted = ROLE_PERMISSIONS[role] if role is not None else frozenset()
    with transaction.atomic():
        for perm in ALL_PERMISSIONS - wanted:
            remove_perm(perm, user, namespace)
        for perm in wanted:
            assign_perm(perm, user, namespace)


def memberships(user) -> dict[int, Role]:
    """namespace id -> the user's role there, for every namespace they are a member of."""
    if user is None or not user.is_authenticated:
        return {}
    content_type = ContentType.objects.get_for_model(Namespace)
    held: dict[int, set[str]] = {}
    for object_pk, codename in UserObjectPermission.objects.filter(
            user=user, content_type=content_type,
            permission__codename__in=ALL_PERMISSIONS).values_list("object_pk", "permission__codename"):
        held.setdefault(int(object_pk), set()).add(codename)
    roles = {ns_id: role_from_permissions(perms) for ns_id, perms in held.items()}
    return {ns_id: role for ns_id, role in roles.items() if role is not None}


def members(namespace: Namespace) -> dict[str, Role]:
    """username -> role, for every member of ``namespace``."""
    content_type = ContentType.objects.get_for_model(Namespace)
    held: dict[str, set[str]] = {}
    for username, codename in UserObjectPermission.objects.filter(
            content_type=content_type, object_pk=str(namespace.pk),
            permission__codename__in=ALL_PERMISSIONS).values_list(
            f"user__{get_user_model().USERNAME_FIELD}", "permission__codename"):
        held.setdefault(username, set()).add(codename)
    roles = {name: role_from_permissions(perms) for name, perms in held.items()}
    return {name: role for name, role in sorted(roles.items()) if role is not None}
