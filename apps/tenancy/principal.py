"""Who is asking: the one object every service receives instead of a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.core.roles import Action, Role, allows


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key or a Django user.

    ``namespace_id`` is the namespace a key is bound to (None for system admins and
    users). ``agent_id`` is what stored memories are attributed to; it always comes
    from the credential. ``label`` names the principal in versions and logs without
    revealing a secret (``key:mw_live_Ab12…`` or ``user:alice``).
    """

    label: str
    agent_id: str
    role: Role | None
    namespace_id: int | None = None
    key_id: int | None = None
    user_id: int | None = None
    #: The bound namespace as loaded with the key (saves a query per request).
    namespace: Any = field(default=None, compare=False, repr=False)
    #: A person's roles: namespace id -> role, from their memberships (members.py).
    memberships: Mapping[int, Role] = field(default_factory=dict, compare=False, repr=False)
    #: Namespaces where the person's role needs a second factor they have not set up
    #: (apps/tenancy/mfa.py): the role is held there but may not be exercised.
    dormant: frozenset[int] = field(default_factory=frozenset, compare=False, repr=False)

    # DRF treats request.user as a user: these make a Principal pass its checks.
    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> str:
        return self.label

    @property
    def is_system_admin(self) -> bool:
        return self.role == Role.SYSTEM

    def role_in(self, namespace_id: int) -> Role | None:
        """This principal's role in a namespace, or None if it may not see it."""
        if self.is_system_admin:
            return Role.SYSTEM
        if self.namespace_id is not None and self.namespace_id == namespace_id:
            return self.role
        return self.memberships.get(namespace_id)

    def namespace_ids(self, action: Action) -> list[int]:
        """The namespaces where this (non-system) principal may take ``action``."""
        ids = {ns_id for ns_id in self.memberships if self.can(action, ns_id)}
        if self.namespace_id is not None and self.can(action, self.namespace_id):
            ids.add(self.namespace_id)
        return sorted(ids)

    def can(self, action: Action, namespace_id: int) -> bool:
        if namespace_id in self.dormant:
            return False
        return allows(self.role_in(namespace_id), action)

    @classmethod
    def for_key(cls, key) -> Principal:  # key: apps.tenancy.models.ApiKey
        return cls(
            label=f"key:{key.prefix}",
            agent_id=key.agent_id,
            role=key.role_enum,
            namespace_id=key.namespace_id,
            key_id=key.pk,
            namespace=key.namespace if key.namespace_id else None,
        )

    @classmethod
    def for_user(cls, user) -> Principal:  # user: django.contrib.auth User
        """A person: a system admin if a superuser, else their namespace memberships
        (with the roles that await a second factor held dormant, apps/tenancy/mfa.py)."""
        from apps.tenancy.members import memberships
        from apps.tenancy.mfa import dormant_namespaces

        held = {} if user.is_superuser else memberships(user)
        return cls(
            label=f"user:{user.get_username()}",
            agent_id=f"user:{user.get_username()}",
            role=Role.SYSTEM if user.is_superuser else None,
            user_id=user.pk,
            memberships=held,
            dormant=dormant_namespaces(user, held),
        )
