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

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput
from apps.core.roles import ACTION_PERMISSION, ROLE_PERMISSIONS, Role, role_from_permissions
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

ALL_PERMISSIONS = frozenset(ACTION_PERMISSION.values())


def set_role(namespace: Namespace, user, role: Role | None, *,
             actor: Principal | str = "system:manage.py") -> None:
    """Make ``user`` a member of ``namespace`` with ``role`` (None: no longer a member)."""
    if role is not None and role not in ROLE_PERMISSIONS:
        raise InvalidInput(f"a member's role is reader, agent or admin, not {role.label}.",
                           field="role")
    wanted = ROLE_PERMISSIONS[role] if role is not None else frozenset()
    with transaction.atomic():
        if role is not Role.ADMIN:
            _keep_an_admin(namespace, user)
        for perm in ALL_PERMISSIONS - wanted:
            remove_perm(perm, user, namespace)
        for perm in wanted:
            assign_perm(perm, user, namespace)
        audit(actor, "member.set" if role is not None else "member.remove", namespace=namespace,
              summary={"username": user.get_username(),
                       "role": role.label if role is not None else None})


def _keep_an_admin(namespace: Namespace, user) -> None:
    """Refuse to remove or demote the namespace's last team admin (issue 17, item 3).

    Without one nobody can manage the namespace from the dashboard: the reviewed team
    admin removed herself with one click and was locked out. This is the one place every
    door (REST, the dashboard, ``add_member``, invitations) goes through. The namespace
    row is locked first so two admins demoting each other at once cannot both succeed.
    System admins are no members, so they are never counted here, and are unaffected."""
    Namespace.objects.select_for_update().filter(pk=namespace.pk).first()
    admins = {name for name, held in members(namespace).items() if held is Role.ADMIN}
    if admins == {user.get_username()}:
        raise Conflict(f"{user.get_username()} is the last admin of {namespace.slug}: make "
                       "someone else admin first.", field="username", code="last_admin")


def memberships(user) -> dict[int, Role]:
    """namespace id -> the user's role there, for every namespace they are a member of."""
    if user is None or not user.is_authenticated:
        return {}
    rows = _permission_rows(user=user).values_list("object_pk", "permission__codename")
    return {int(ns_id): role for ns_id, role in _roles(rows).items()}


def member_user(namespace: Namespace, username: str):
    """The user ``username`` if they are a member of ``namespace``, else None (whether
    or not such a user exists: team admins must not learn that, see invitations.py)."""
    users = get_user_model()
    holders = _permission_rows(object_pk=str(namespace.pk)).values("user_id")
    return users.objects.filter(**{users.USERNAME_FIELD: username}, pk__in=holders).first()


def members(namespace: Namespace) -> dict[str, Role]:
    """username -> role, for every member of ``namespace``."""
    rows = _permission_rows(object_pk=str(namespace.pk)).values_list(
        f"user__{get_user_model().USERNAME_FIELD}", "permission__codename")
    return dict(sorted(_roles(rows).items()))


def _permission_rows(**conditions):
    """The namespace-role permissions granted directly to users, narrowed by ``conditions``."""
    return UserObjectPermission.objects.filter(
        content_type=ContentType.objects.get_for_model(Namespace),
        permission__codename__in=ALL_PERMISSIONS, **conditions)


def _roles(rows) -> dict:
    """(owner, codename) rows -> owner: role, for owners whose permissions make a whole role."""
    held: dict = {}
    for owner, codename in rows:
        held.setdefault(owner, set()).add(codename)
    roles = {owner: role_from_permissions(perms) for owner, perms in held.items()}
    return {owner: role for owner, role in roles.items() if role is not None}
