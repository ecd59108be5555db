"""Key lifecycle for team admins: list, create, rotate, revoke and expire a namespace's keys.

Seed 003's admin endpoints. Every function takes the acting principal and the
namespace slug, and needs the ``manage`` action there (team admin or system admin).
A key of another namespace is a 404, like any foreign object. Secrets are returned
once, by ``create`` and ``rotate``, and never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput, NotFound, PermissionDenied
from apps.core.roles import Role
from apps.core.validation import StrictSerializer, UTCDateTimeField, validate
from apps.tenancy import changes
from apps.tenancy.models import ApiKey
from apps.tenancy.principal import Principal
from apps.tenancy.services import AGENT_ID_RE, create_api_key, key_summary, managed_namespace

MAX_GRACE = 7 * 24 * 3600


class KeyInput(StrictSerializer):
    role = serializers.ChoiceField(choices=["reader", "agent", "admin"])
    # The service checks it too (check_agent_id); the validator puts it in the schema.
    agent_id = serializers.CharField(max_length=128, validators=[RegexValidator(
        AGENT_ID_RE, "agent_id must be 1-128 characters: letters, digits, '_', '.', '@', '-' "
        "(starting with a letter or digit).")])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_at = UTCDateTimeField(required=False, allow_null=True, default=None)


class KeyUpdate(StrictSerializer):
    expires_at = UTCDateTimeField(allow_null=True)


class RotateInput(StrictSerializer):
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_GRACE,
        help_text="How long the old secret keeps working (default "
        "MEMORYWEB_KEY_ROTATION_GRACE_SECONDS).")


def _future(moment, field: str = "expires_at"):
    if moment is not None and moment <= timezone.now():
        raise InvalidInput("must be in the future.", field=field)
    return moment


def list_keys(principal: Principal, slug: str):
    """Every key of the namespace, newest first, revoked and expired ones included."""
    return ApiKey.objects.filter(namespace=managed_namespace(principal, slug)).order_by("-created_at", "-pk")


def get_key(principal: Principal, slug: str, key_id: Any) -> ApiKey:
    namespace = managed_namespace(principal, slug)
    try:
        return ApiKey.objects.get(namespace=namespace, pk=int(key_id))
    except (ApiKey.DoesNotExist, TypeError, ValueError):
        raise NotFound("key not found.") from None


def create_key(principal: Principal, slug: str, data: Mapping[str, Any]) -> tuple[ApiKey, str]:
    """A new key of the namespace; returns it with its secret (shown once)."""
    namespace = managed_namespace(principal, slug)
    cleaned = validate(KeyInput, data)
    return create_api_key(role=Role.from_label(cleaned["role"]), agent_id=cleaned["agent_id"],
                          namespace=namespace, name=cleaned["name"],
                          expires_at=_future(cleaned["expires_at"]), actor=principal)


def check_new_expiry(key: ApiKey, expires_at):
    """``expires_at`` as a new expiry of ``key``, or InvalidInput naming why not.

    A revoked key stays revoked, and a rotated key may end sooner but never after its
    grace (nor never): an expiry edit must not bring back a secret that was cut off.
    The admin's form asks this too, so the refusal shows on the form.
    """
    if key.revoked_at is not None:
        raise InvalidInput("this key is revoked; a revoked key cannot be given a new expiry "
                           "(create a new key).", field="expires_at")
    if key.grace_ends_at is not None and (expires_at is None or expires_at > key.grace_ends_at):
        successor = key.superseded_by.prefix if key.superseded_by_id else "a new key"
        raise InvalidInput(
            f"this key was rotated (replaced by {successor}); its expiry may move earlier, "
            f"never past the end of its grace period ({key.grace_ends_at.isoformat()}).",
            field="expires_at")
    return _future(expires_at)


def set_expiry(principal: Principal, slug: str, key_id: Any, data: Mapping[str, Any]) -> ApiKey:
    """Set or clear a key's expiry (never reviving a revoked or rotated key)."""
    key = get_key(principal, slug, key_id)
    expires_at = validate(KeyUpdate, data)["expires_at"]
    with transaction.atomic():
        key = ApiKey.objects.select_for_update(of=("self",)).select_related("superseded_by").get(pk=key.pk)
        key.expires_at = check_new_expiry(key, expires_at)
        key.save(update_fields=["expires_at"])
        audit(principal, "key.expiry", namespace=key.namespace, record_ids=[key.pk],
              summary=key_summary(key))
        changes.key_changed.send(sender=ApiKey, key_id=key.pk, action="key_changed")
    return key


def rotate_key(principal: Principal, slug: str, key_id: Any,
               data: Mapping[str, Any] | None = None) -> tuple[ApiKey, str]:
    """A new secret for the same role and agent; the old one works for the grace period.

    The new key keeps the old one's name, role, agent_id and expiry. The old key's
    expiry becomes now + grace (or stays, if sooner): a grace of 0 cuts it off at once.
    The old key is marked superseded (``superseded_by``, ``rotated_at``, and
    ``grace_ends_at``, past which no later edit can move its expiry), and is never
    rotated a second time (its successor is).
    """
    old = get_key(principal, slug, key_id)
    grace = validate(RotateInput, data or {}).get(
        "grace_seconds", settings.MEMORYWEB_KEY_ROTATION_GRACE_SECONDS)
    with transaction.atomic():
        old = ApiKey.objects.select_for_update(of=("self",)).select_related("superseded_by").get(pk=old.pk)
        if old.is_superseded:
            successor = old.superseded_by.prefix if old.superseded_by_id else "another key"
            raise InvalidInput(f"this key was already rotated (to {successor}); rotate that "
                               "key instead.", field="key")
        if old.status != "active":
            raise InvalidInput("a revoked or expired key cannot be rotated; create a new one.",
                               field="key")
        new, raw = create_api_key(role=old.role_enum, agent_id=old.agent_id,
                                  namespace=old.namespace, name=old.name,
                                  expires_at=old.expires_at, actor=principal,
                                  operation="key.rotate")
        now = timezone.now()
        cutoff = now + timedelta(seconds=grace)
        if old.expires_at is None or cutoff < old.expires_at:
            old.expires_at = cutoff
        old.superseded_by, old.rotated_at, old.grace_ends_at = new, now, old.expires_at
        old.save(update_fields=["expires_at", "superseded_by", "rotated_at", "grace_ends_at"])
        audit(principal, "key.expiry", namespace=old.namespace, record_ids=[old.pk],
              summary={**key_summary(old), "rotated_to": new.prefix})
        changes.key_changed.send(sender=ApiKey, key_id=old.pk, action="key_changed")
    return new, raw


def revoke_key(principal: Principal, slug: str, key_id: Any) -> ApiKey:
    """Stop a key at once (idempotent)."""
    return _revoke(principal, get_key(principal, slug, key_id))


def revoke_system_key(principal: Principal, key_id: Any) -> ApiKey:
    """Stop a system-admin key (they belong to no namespace): system admins only."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may revoke a system-admin key.")
    key = ApiKey.objects.filter(namespace__isnull=True, pk=key_id).first()
    if key is None:
        raise NotFound("key not found.")
    return _revoke(principal, key)


def _revoke(principal: Principal, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        with transaction.atomic():
            key.save(update_fields=["revoked_at"])
            audit(principal, "key.revoke", namespace=key.namespace, record_ids=[key.pk],
                  summary=key_summary(key))
            # Open WebSockets of the key close now (apps/live/receivers.py).
            changes.key_changed.send(sender=ApiKey, key_id=key.pk, action="key_revoked")
    return key
