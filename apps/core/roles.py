"""Roles and the actions they allow: the one place that maps role -> permission.

From seed 000's role table, made multi-tenant (see DESIGN.md "Roles"). Roles are
ordered: each includes everything the one below may do.
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    READER = 1
    AGENT = 2
    ADMIN = 3  # team admin of one namespace
    SYSTEM = 4  # global system admin

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}; expected one of {ROLE_LABELS}") from None


ROLE_LABELS = [r.label for r in Role]
ROLE_CHOICES = [(r.label, r.label.replace("admin", " admin").strip().capitalize()) for r in Role]


class Action(enum.StrEnum):
    READ = "read"  # recall, get, list, health
    INGEST = "ingest"  # ingest, ingest_and_recall
    EDIT = "edit"  # update / delete a memory (later: consolidate, digest, snapshot)
    MANAGE = "manage"  # members, keys, grants, export
    SYSTEM = "system"  # bulk delete by agent, merge namespaces, erasure, all namespaces


MIN_ROLE: dict[Action, Role] = {
    Action.READ: Role.READER,
    Action.INGEST: Role.AGENT,
    Action.EDIT: Role.ADMIN,
    Action.MANAGE: Role.ADMIN,
    Action.SYSTEM: Role.SYSTEM,
}


def allows(role: Role | None, action: Action) -> bool:
    return role is not None and role >= MIN_ROLE[action]


#: Object permissions on a Namespace (Namespace.Meta.permissions), one per action a
#: member may take there. A role is a named bundle of them.
ACTION_PERMISSION: dict[Action, str] = {
    Action.READ: "read_memories",
    Action.INGEST: "ingest_memories",
    Action.EDIT: "edit_memories",
    Action.MANAGE: "manage_namespace",
}

#: Role -> the permissions a member with that role holds on the namespace.
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    role: frozenset(perm for action, perm in ACTION_PERMISSION.items() if allows(role, action))
    for role in (Role.READER, Role.AGENT, Role.ADMIN)
}


def role_from_permissions(perms: set[str] | frozenset[str]) -> Role | None:
    """The highest member role whose whole bundle ``perms`` holds (None: not a member)."""
    for role in (Role.ADMIN, Role.AGENT, Role.READER):
        if ROLE_PERMISSIONS[role] <= perms:
            return role
    return None
