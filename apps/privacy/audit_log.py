"""Reading the audit log: team admins see their namespace's entries, system admins all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework import serializers

from apps.audit.models import AuditEntry
from apps.audit.verify import Verdict, verify
from apps.core.errors import PermissionDenied
from apps.core.validation import StrictSerializer, validate
from apps.tenancy.principal import Principal
from apps.tenancy.services import managed_namespace


class AuditQuery(StrictSerializer):
    namespace = serializers.CharField(required=False, max_length=64,
                                      help_text="Team admins: their namespace (a namespace key "
                                      "needs none). System admins: any slug, or all.")
    operation = serializers.CharField(required=False, max_length=64,
                                      help_text='e.g. "memory.create", or a prefix: "key."')
    actor = serializers.CharField(required=False, max_length=200)
    record_id = serializers.CharField(required=False, max_length=64,
                                      help_text="Entries that name this memory, key or grant id.")
    after_seq = serializers.IntegerField(required=False, min_value=0, default=0,
                                         help_text="Entries after this sequence number (paging).")
    limit = serializers.IntegerField(required=False, min_value=1, default=100,
                                     max_value=settings.MEMORYWEB_LIMITS["max_page_size"])


def entries(principal: Principal, params: Mapping[str, Any]) -> tuple[QuerySet, int]:
    """Entries the principal may read, oldest first from ``after_seq``; and the limit.

    A team admin reads the entries of the namespace they manage (by id: a deleted and
    re-created slug is another namespace); a system admin reads everything.
    """
    query = validate(AuditQuery, dict(params.items()))
    found = AuditEntry.objects.filter(seq__gt=query["after_seq"]).order_by("seq")
    slug = query.get("namespace")
    if principal.is_system_admin:
        if slug:
            found = found.filter(namespace=slug)
    else:
        found = found.filter(namespace_id=managed_namespace(principal, slug).pk)
    operation = query.get("operation")
    if operation:
        found = (found.filter(operation__startswith=operation) if operation.endswith(".")
                 else found.filter(operation=operation))
    if query.get("actor"):
        found = found.filter(actor=query["actor"])
    if query.get("record_id"):
        found = found.filter(records__record_id=query["record_id"])
    return found, query["limit"]


def check_chain(principal: Principal) -> Verdict:
    """Verify the whole chain (system admins: it spans every namespace)."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may verify the audit chain.")
    return verify()
