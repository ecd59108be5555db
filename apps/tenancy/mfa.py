"""Where MEMORYWEB_REQUIRE_MFA bites: the roles that need a second factor, per namespace.

The rule (docs/tenancy.md, "Two-factor authentication is per role"): while
``MEMORYWEB_REQUIRE_MFA`` is on and a person has no TOTP authenticator, each role of
theirs that needs one — team admin of a namespace — is *dormant*: in that namespace
their session may do nothing (403 "two-factor authentication is required …"), and the
role counts nowhere else (lists, the dashboard). Their reader and agent roles in other
namespaces keep working. So a role granted in one namespace never changes what the
person may do in another, mid-session or ever. A superuser's role is exercised
everywhere, so without TOTP their session does nothing at all (``session_refused``).

Once a TOTP authenticator exists, allauth asks for its code at every login, so a
session of such a person has passed the second factor.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

from apps.core.roles import Role

#: Member roles that may only be exercised with a second factor when MFA is required.
MFA_ROLES = frozenset({Role.ADMIN})


def required() -> bool:
    return bool(settings.MEMORYWEB_REQUIRE_MFA)


def has_totp(user) -> bool:
    """Whether the person has set up a TOTP authenticator (allauth MFA)."""
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def dormant_namespaces(user, memberships: Mapping[int, Role]) -> frozenset[int]:
    """The namespaces where ``user``'s role needs a second factor they lack."""
    if not required() or user is None or not user.is_authenticated or user.is_superuser:
        return frozenset()
    needing = frozenset(ns for ns, role in memberships.items() if role in MFA_ROLES)
    if not needing or has_totp(user):
        return frozenset()
    return needing


def session_refused(user, principal) -> bool:
    """True when a password-only session of ``user`` may do nothing at all: a superuser
    without TOTP, or a person whose every role is dormant. (A person with a reader or
    agent role somewhere keeps a working session for it.)"""
    if not required() or user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return not has_totp(user)
    return bool(principal.dormant) and set(principal.memberships) <= principal.dormant
