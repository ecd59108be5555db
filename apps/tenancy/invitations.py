"""Invitations: how a team admin brings a person into their namespace, with consent.

Before this, a team admin PUT a username to their members and learned whether it
existed on the server (200 vs 404) and whether it was a superuser (400), and the person
became a member without being asked (issue 16, item 4). Now:

- A team admin *invites* by username or e-mail address. The answer, the stored row, the
  admin's list and the audit entry are the same whether the name is held by anyone,
  by a superuser or by nobody: the name is resolved to a person once, when the
  invitation is sent, into ``Invitation.user``, which no team admin ever sees.
- Only that person sees the invitation (``GET /api/v1/invitations``, the account page)
  and becomes a member by accepting it; declining, the admin revoking it, or the expiry
  (``MEMORYWEB_INVITATION_DAYS``) ends it. A name nobody held when it was sent can never
  be accepted (an account registered under it later does not inherit it).
- Changing the role of someone who is already a member stays direct (apps.tenancy.
  namespaces.set_member), and so do a system admin's changes and ``manage.py add_member``.

Every step is audited in the namespace: invitation.create, .accept (with member.set),
.decline, .revoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.core.roles import Role
from apps.core.validation import StrictSerializer, TextField, validate
from apps.tenancy import members as membership
from apps.tenancy.models import Invitation, InvitationStatus, Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import managed_namespace

MEMBER_ROLES = ["reader", "agent", "admin"]


class InvitationInput(StrictSerializer):
    openapi_one_of_required = ("username", "email")  # the schema says _cleaned()'s rule
    username = TextField(max_length=150, required=False,
                         help_text="Whom to invite, by username (or give email).")
    email = serializers.EmailField(max_length=254, required=False,
                                   help_text="Whom to invite, by e-mail address (or username).")
    role = serializers.ChoiceField(choices=MEMBER_ROLES)


def _cleaned(data: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(invitee, by_email, role) from an invitation request, or InvalidInput."""
    cleaned = validate(InvitationInput, data)
    username, email = cleaned.get("username", "").strip(), cleaned.get("email", "").strip()
    if bool(username) == bool(email):
        raise InvalidInput("give either username or email (one of them).", field="username")
    return (email.lower(), True, cleaned["role"]) if email else (username, False, cleaned["role"])


def _resolve(invitee: str, by_email: bool):
    """The one person who may accept: an active account that is not a superuser (whose
    e-mail address, when the server lets anyone sign up, is verified), else None."""
    users = get_user_model()
    if by_email:
        found = users.objects.filter(**{f"{users.get_email_field_name()}__iexact": invitee},
                                     is_active=True)
        if settings.MEMORYWEB_OPEN_SIGNUP:  # anyone could have typed this address
            from allauth.account.models import EmailAddress

            found = found.filter(pk__in=EmailAddress.objects.filter(
                email__iexact=invitee, verified=True).values("user_id"))
        found = list(found[:2])
        user = found[0] if len(found) == 1 else None
    else:
        user = users.objects.filter(**{users.USERNAME_FIELD: invitee}, is_active=True).first()
    return None if user is None or user.is_superuser else user


def invite(principal: Principal, slug: str, data: Mapping[str, Any]) -> Invitation:
    """Invite someone to the namespace (team admin); replaces their pending invitation.

    What happens is the same for every name, so the caller learns nothing about who
    exists outside their namespace."""
    namespace = managed_namespace(principal, slug)
    invitee, by_email, role = _cleaned(data)
    return _create(principal, namespace, invitee, by_email, role)


def invite_member(principal: Principal, namespace: Namespace, username: str,
                  role: Role) -> Invitation:
    """The member door's invitation (PUT …/members/{username} for a non-member)."""
    return _create(principal, namespace, username, False, role.label)


def _create(principal: Principal, namespace: Namespace, invitee: str, by_email: bool,
            role: str) -> Invitation:
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return _create_once(principal, namespace, invitee, by_email, role)
        except IntegrityError:
            # Two invitations of one name raced past the lock (there was no pending row to
            # lock yet): the unique constraint let one in; this one replaces it, as it
            # would have had it come a moment later.
            if attempt == _CREATE_ATTEMPTS - 1:
                raise Conflict("the invitation changed concurrently; send it again.") from None
    raise AssertionError("unreachable")


#: Tries of one invitation that keeps meeting a concurrent one for the same name.
_CREATE_ATTEMPTS = 3


def _create_once(principal: Principal, namespace: Namespace, invitee: str, by_email: bool,
                 role: str) -> Invitation:
    now = timezone.now()
    with transaction.atomic():
        replaced = list(Invitation.objects.select_for_update().filter(
            namespace=namespace, invitee=invitee, by_email=by_email,
            status=InvitationStatus.PENDING).values_list("pk", flat=True))
        Invitation.objects.filter(pk__in=replaced).update(status=InvitationStatus.REVOKED,
                                                          decided_at=now)
        invitation = Invitation.objects.create(
            namespace=namespace, invitee=invitee, by_email=by_email, role=role,
            user=_resolve(invitee, by_email), created_at=now, created_by=principal.label,
            expires_at=now + timedelta(days=settings.MEMORYWEB_INVITATION_DAYS))
        audit(principal, "invitation.create", namespace=namespace, record_ids=[invitation.pk],
              summary={"invitee": invitee, "role": role, "replaces": replaced})
    return invitation


def list_invitations(principal: Principal, slug: str):
    """Every invitation of the namespace, newest first (team admin)."""
    return Invitation.objects.filter(namespace=managed_namespace(principal, slug))


def revoke(principal: Principal, slug: str, invitation_id: Any) -> Invitation:
    """Withdraw a pending invitation (idempotent); an answered one is a 409."""
    namespace = managed_namespace(principal, slug)
    with transaction.atomic():
        invitation = _locked(Invitation.objects.filter(namespace=namespace), invitation_id)
        if invitation.status in (InvitationStatus.ACCEPTED, InvitationStatus.DECLINED):
            raise Conflict(f"this invitation was already {invitation.status}"
                           + ("; remove the member instead." if invitation.status == "accepted"
                              else "."), field="invitation")
        if invitation.status == InvitationStatus.PENDING:
            invitation.status, invitation.decided_at = InvitationStatus.REVOKED, timezone.now()
            invitation.save(update_fields=["status", "decided_at"])
            audit(principal, "invitation.revoke", namespace=namespace,
                  record_ids=[invitation.pk], summary={"invitee": invitation.invitee})
    return invitation


def pending_for(principal: Principal):
    """The open invitations addressed to this person (none for an API key)."""
    if principal.user_id is None:
        return Invitation.objects.none()
    return Invitation.objects.open().filter(user_id=principal.user_id).select_related("namespace")


def accept(principal: Principal, invitation_id: Any) -> Invitation:
    """Become a member with the invited role (replacing any role held there)."""
    with transaction.atomic():
        invitation = _answerable(principal, invitation_id)
        user = invitation.user
        if user.is_superuser:
            raise Conflict("a system admin needs no membership.", field="invitation")
        invitation.status, invitation.decided_at = InvitationStatus.ACCEPTED, timezone.now()
        invitation.save(update_fields=["status", "decided_at"])
        membership.set_role(invitation.namespace, user, Role.from_label(invitation.role),
                            actor=principal)
        audit(principal, "invitation.accept", namespace=invitation.namespace,
              record_ids=[invitation.pk], summary={"role": invitation.role})
    return invitation


def decline(principal: Principal, invitation_id: Any) -> Invitation:
    with transaction.atomic():
        invitation = _answerable(principal, invitation_id)
        invitation.status, invitation.decided_at = InvitationStatus.DECLINED, timezone.now()
        invitation.save(update_fields=["status", "decided_at"])
        audit(principal, "invitation.decline", namespace=invitation.namespace,
              record_ids=[invitation.pk], summary={"role": invitation.role})
    return invitation


def _answerable(principal: Principal, invitation_id: Any) -> Invitation:
    """The caller's own invitation, locked, if it may still be answered. Anyone else's
    (and every invitation, for an API key) is a 404."""
    if principal.user_id is None:
        raise NotFound("invitation not found.")
    invitation = _locked(Invitation.objects.filter(user_id=principal.user_id)
                         .select_related("namespace", "user"), invitation_id)
    if invitation.status != InvitationStatus.PENDING:
        raise Conflict(f"this invitation was {invitation.status}.", field="invitation")
    if invitation.state == "expired":
        raise Conflict("this invitation expired; ask the namespace's admin for a new one.",
                       field="invitation")
    return invitation


def _locked(queryset, invitation_id: Any) -> Invitation:
    try:
        return queryset.select_for_update(of=("self",)).get(pk=int(invitation_id))
    except (Invitation.DoesNotExist, TypeError, ValueError):
        raise NotFound("invitation not found.") from None
