"""The namespaces API's services: list, create, rename, configure, archive, delete, members.

System admins do everything; a team admin sees and configures their own namespace
(name, recall defaults, near-duplicate policy) and manages its members; any other
principal sees the namespaces it can read. Invisible namespaces are 404s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.validators import RegexValidator
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.audit.models import AuditEntry
from apps.core import erasure_ledger, keystore, namespace_keys
from apps.core.errors import InvalidInput, NotFound, PermissionDenied
from apps.core.key_providers import KeyUnavailable
from apps.core.roles import Action, Role
from apps.core.validation import StrictSerializer, validate
from apps.tenancy import changes, invitations, namespace_settings
from apps.tenancy import members as membership
from apps.tenancy.models import SETTING_FIELDS, Invitation, Namespace, NearDuplicatePolicy
from apps.tenancy.principal import Principal
from apps.tenancy.services import (
    SLUG_RE,
    authorize,
    create_namespace,
    managed_namespace,
    resolve_namespace,
)

logger = logging.getLogger(__name__)


class NamespaceCreate(StrictSerializer):
    # The service checks it too (create_namespace); the validator puts it in the schema.
    slug = serializers.CharField(max_length=64, validators=[RegexValidator(
        SLUG_RE, "slug must be lowercase letters, digits, '-' or '_'.")])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class NamespaceUpdate(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    recall_defaults = namespace_settings.NamespaceSettingField("recall_defaults", required=False)
    rollups = namespace_settings.NamespaceSettingField("rollups", required=False)
    consolidation = namespace_settings.NamespaceSettingField("consolidation", required=False)
    memory_mode = namespace_settings.NamespaceSettingField("memory_mode", required=False)
    gateway = namespace_settings.NamespaceSettingField(
        "gateway", required=False, help_text="System admins only.")
    near_duplicate_policy = serializers.ChoiceField(choices=NearDuplicatePolicy.choices,
                                                    required=False)
    near_duplicate_threshold = serializers.FloatField(required=False, allow_null=True,
                                                      min_value=0.01, max_value=1.0)
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=36500,
        help_text="Erase memories older than this many days (null: keep).")
    audit_reads = serializers.BooleanField(
        required=False, allow_null=True,
        help_text="Audit every recall here (null: the server's MEMORYWEB_AUDIT_READS).")
    archived = serializers.BooleanField(required=False, help_text="System admins only.")


class MemberInput(StrictSerializer):
    role = serializers.ChoiceField(choices=["reader", "agent", "admin"])


def list_namespaces(principal: Principal):
    """Every namespace for a system admin; otherwise those the principal may read."""
    queryset = Namespace.objects.order_by("slug")
    if principal.is_system_admin:
        return queryset
    return queryset.filter(pk__in=principal.namespace_ids(Action.READ))


def get_namespace(principal: Principal, slug: str) -> Namespace:
    namespace = resolve_namespace(principal, slug)
    authorize(principal, namespace.pk, Action.READ)
    return namespace


def create(principal: Principal, data: Mapping[str, Any]) -> Namespace:
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may create a namespace.")
    cleaned = validate(NamespaceCreate, data)
    return create_namespace(cleaned["slug"], cleaned["name"], actor=principal)


def update(principal: Principal, slug: str, data: Mapping[str, Any]) -> Namespace:
    """Rename or configure (team admin of it); archive or unarchive (system admin)."""
    namespace = managed_namespace(principal, slug)
    cleaned = validate(NamespaceUpdate, data)
    archived_changed = False
    if "archived" in cleaned:
        if not principal.is_system_admin:
            raise PermissionDenied("only a system admin may archive a namespace.")
        archived = cleaned.pop("archived")
        before = namespace.archived_at
        namespace.archived_at = (namespace.archived_at or timezone.now()) if archived else None
        archived_changed = before != namespace.archived_at
    for name in SETTING_FIELDS:
        if name in cleaned:
            cleaned[name] = namespace_settings.clean(name, cleaned[name])
            setting = namespace_settings.registered(name)
            if (not principal.is_system_admin
                    and setting.system_admin_change(getattr(namespace, name), cleaned[name])):
                raise PermissionDenied(f"only a system admin may change {name}.upstreams.")
    changed = sorted(name for name, value in cleaned.items() if getattr(namespace, name) != value)
    for name, value in cleaned.items():
        setattr(namespace, name, value)
    with transaction.atomic():
        namespace.save()
        audit(principal, "namespace.update", namespace=namespace,
              summary={"fields": changed + (["archived"] if archived_changed else [])})
    return namespace


def delete(principal: Principal, slug: str) -> int:
    """Delete a namespace and everything in it (system admin); returns the memory count."""
    return delete_namespace(principal, resolve_namespace(principal, slug))


def delete_namespace(principal: Principal, namespace: Namespace, *,
                     ledger: bool = True) -> int:
    """Delete a namespace with its memories, versions, keys, keyword table and vector
    collection (system admin); returns how many memories it held.

    The SQL rows go by cascade; what lives outside SQL is dropped by the apps that keep
    it, on ``changes.namespace_deleting`` (memories: the vector collection, before the
    rows, with its files on disk in the embedded store; its keyword table after, on
    ``post_delete``). The deletion is appended to the erasure ledger before the commit
    (apps/core/erasure_ledger.py), so restoring an older backup deletes it again; a
    ledger that cannot be written fails the deletion (503). ``ledger=False``: a replay
    of that very entry (apps/privacy/ledger.py).

    Crypto-shredding (docs/encryption.md): a namespace with a data key in the key store
    has it destroyed once the deletion committed — never before, so a deletion that rolls
    back keeps its key and its data readable. A replay shreds too: a restored backup's
    namespace stays unreadable even beside a key store put back from an older key backup,
    and a key shredded already (the usual case) is simply not there any more.
    """
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete a namespace.")
    changes.namespace_deleting.send(sender=Namespace, namespace=namespace)
    with transaction.atomic():
        ids = [str(pk) for pk in namespace.memories.values_list("pk", flat=True)]
        entry = audit(principal, "namespace.delete", namespace=namespace,
                      summary={"memories": len(ids), "keys": namespace.api_keys.count()})
        slug, pk = namespace.slug, namespace.pk
        namespace.delete()
        transaction.on_commit(lambda: shred_key(pk, slug))
        if ledger:
            erasure_ledger.append("namespace_deleted", {
                "namespace": {"slug": slug, "id": pk}, "memories": ids,
                "audit": {"seq": entry.seq, "entry_hash": entry.entry_hash},
                "origin": AuditEntry.objects.filter(seq=1).values_list(
                    "entry_hash", flat=True).first()})
    return len(ids)


def shred_key(namespace_id: int, slug: str = "") -> bool:
    """Destroy a deleted namespace's data key, if it has one; whether it had.

    Runs after the deletion committed, so it cannot undo it: a key store that fails here
    is logged (the namespace's id, the cause) and the key is left for the operator to
    shred, rather than answering an error for a deletion that did happen."""
    try:
        return namespace_keys.has_key(namespace_id) and namespace_keys.shred(namespace_id)
    except (KeyUnavailable, keystore.KeystoreError, OSError):
        logger.exception("namespace %s (%s) was deleted but its data key in %s could not be "
                         "destroyed; its ciphertext stays readable until it is: fix the key "
                         "store, then run manage.py shell -c \"from apps.core import "
                         "namespace_keys; namespace_keys.shred(%s)\"", namespace_id, slug,
                         keystore.directory(), namespace_id)
        return False


def list_members(principal: Principal, slug: str) -> dict[str, Role]:
    namespace = managed_namespace(principal, slug)
    return membership.members(namespace)


def set_member(principal: Principal, slug: str, username: str,
               data: Mapping[str, Any] | None) -> Role | Invitation | None:
    """Give ``username`` a role (``data`` = {"role"}) or end the membership (None).

    A system admin (who sees every user anyway) does it directly. A team admin changes
    or ends the role of a *member* directly; for anyone else the answer must not depend
    on whether the name exists outside this namespace (issue 16, item 4): a role is an
    invitation the person accepts (returned, the door answers 202), and ending a
    membership that does not exist is the same 404 for every name."""
    namespace = managed_namespace(principal, slug)
    role = Role.from_label(validate(MemberInput, data)["role"]) if data is not None else None
    if principal.is_system_admin:
        users = get_user_model()
        user = users.objects.filter(**{users.USERNAME_FIELD: username}).first()
        if user is None:
            raise NotFound(f"user {username!r} not found.", field="username")
        if user.is_superuser:
            raise InvalidInput("a system admin needs no membership.", field="username")
    else:
        user = membership.member_user(namespace, username)
        if user is None and role is None:
            raise NotFound(f"{username!r} is not a member of this namespace.", field="username")
        if user is None:
            return invitations.invite_member(principal, namespace, username, role)
    membership.set_role(namespace, user, role, actor=principal)
    return role
