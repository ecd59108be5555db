"""Sharing grants: one namespace lets another read some of its memories (seed 003's sharing).

The grantor's team admin creates, lists and revokes grants; principals of the grantee
see them (``accessible``) and reach the shared memories through recall with
``include_shared`` and by id, read-only. Grants are read from SQL on every request, so
a revoke or an expiry takes effect on the next one. Memory-side use (the scope as a
Chroma filter, as SQL, as a check on fetched rows) lives in apps.memories.sharing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput, NotFound
from apps.core.kinds import MemoryKind
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, TagsField, UTCDateTimeField, validate
from apps.tenancy import changes
from apps.tenancy.models import Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import (
    SLUG_RE,
    authorize,
    check_writable,
    managed_namespace,
    resolve_namespace,
)


class GrantInput(StrictSerializer):
    grantee = serializers.CharField(max_length=64, help_text="The slug of the namespace that "
                                    "may read.")
    tags = TagsField(required=False, default=list,
                     help_text="Share only memories carrying any of these tags (default: any).")
    kinds = serializers.ListField(child=serializers.ChoiceField(choices=MemoryKind.choices),
                                  required=False, default=list, max_length=len(MemoryKind),
                                  help_text="Share only memories of these kinds (default: any).")
    created_after = UTCDateTimeField(required=False, allow_null=True, default=None,
                                     help_text="Share only memories stored at or after this.")
    created_before = UTCDateTimeField(required=False, allow_null=True, default=None,
                                      help_text="Share only memories stored before this.")
    expires_at = UTCDateTimeField(required=False, allow_null=True, default=None,
                                  help_text="When the grant stops (default: until revoked).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after and before and before <= after:
            raise serializers.ValidationError({"created_before": "must be after created_after."})
        expires = attrs.get("expires_at")
        if expires is not None and expires <= timezone.now():
            raise serializers.ValidationError({"expires_at": "must be in the future."})
        attrs["kinds"] = list(dict.fromkeys(attrs.get("kinds") or []))
        return attrs


def list_grants(principal: Principal, slug: str) -> QuerySet[SharingGrant]:
    """Every grant the namespace has given, newest first, revoked and expired included."""
    return SharingGrant.objects.filter(grantor=managed_namespace(principal, slug)).select_related(
        "grantor", "grantee")


def get_grant(principal: Principal, slug: str, grant_id: Any) -> SharingGrant:
    grantor = managed_namespace(principal, slug)
    try:
        return SharingGrant.objects.select_related("grantor", "grantee").get(
            grantor=grantor, pk=int(grant_id))
    except (SharingGrant.DoesNotExist, TypeError, ValueError):
        raise NotFound("grant not found.") from None


def create_grant(principal: Principal, slug: str, data: Mapping[str, Any]) -> SharingGrant:
    """Let ``data["grantee"]`` read the namespace's memories within the given scope.

    Needs ``manage`` on the grantor only: sharing is the owner's decision. The grantee
    is named by slug; naming one that does not exist is a 400 (the caller is a team
    admin who learnt the slug from its owners).
    """
    grantor = managed_namespace(principal, slug)
    check_writable(grantor)
    cleaned = validate(GrantInput, data)
    slug_in = cleaned.pop("grantee")
    grantee = Namespace.objects.filter(slug=slug_in).first() if SLUG_RE.match(slug_in) else None
    if grantee is None:
        raise InvalidInput(f"namespace {slug_in!r} does not exist.", field="grantee")
    if grantee.pk == grantor.pk:
        raise InvalidInput("a namespace cannot share with itself.", field="grantee")
    with transaction.atomic():
        grant = SharingGrant.objects.create(grantor=grantor, grantee=grantee,
                                            created_by=principal.label, **cleaned)
        audit(principal, "grant.create", namespace=grantor, record_ids=[grant.pk],
              summary=_grant_summary(grant))
    return grant


def _grant_summary(grant: SharingGrant) -> dict:
    """What an audit entry says about a grant: who may read what, until when."""
    return {"grantee": grant.grantee.slug, "tags": grant.tags, "kinds": grant.kinds,
            **{name: getattr(grant, name).isoformat() if getattr(grant, name) else None
               for name in ("created_after", "created_before", "expires_at")}}


def revoke_grant(principal: Principal, slug: str, grant_id: Any) -> SharingGrant:
    """Stop a grant at once (idempotent); the row stays as the record of what was shared."""
    grant = get_grant(principal, slug, grant_id)
    if grant.revoked_at is None:
        grant.revoked_at = timezone.now()
        with transaction.atomic():
            # A conditional update, not save(): a concurrent revoke or namespace delete
            # leaves no row to save, which answered 500 (found by schemathesis).
            if not SharingGrant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
                    revoked_at=grant.revoked_at):
                if not SharingGrant.objects.filter(pk=grant.pk).exists():
                    raise NotFound("grant not found.")
                return get_grant(principal, slug, grant_id)  # revoked meanwhile
            audit(principal, "grant.revoke", namespace=grant.grantor, record_ids=[grant.pk],
                  summary=_grant_summary(grant))
            changes.grant_revoked.send(sender=SharingGrant, grant_id=grant.pk)
    return grant


def accessible(principal: Principal, slug: str | None = None) -> QuerySet[SharingGrant]:
    """Live grants to the namespaces the principal may read (or to ``slug`` alone)."""
    grants = SharingGrant.objects.live().select_related("grantor", "grantee").order_by(
        "grantee__slug", "grantor__slug", "-created_at")
    if slug:
        namespace = resolve_namespace(principal, slug)
        authorize(principal, namespace.pk, Action.READ)
        return grants.filter(grantee=namespace)
    if principal.is_system_admin:
        return grants
    return grants.filter(grantee_id__in=principal.namespace_ids(Action.READ))


def live_grants_to(namespace_ids: list[int]) -> dict[int, list[SharingGrant]]:
    """grantor id -> the live grants it gives to any of ``namespace_ids``."""
    by_grantor: dict[int, list[SharingGrant]] = {}
    for grant in SharingGrant.objects.live().filter(grantee_id__in=namespace_ids).select_related(
            "grantor"):
        by_grantor.setdefault(grant.grantor_id, []).append(grant)
    return by_grantor
