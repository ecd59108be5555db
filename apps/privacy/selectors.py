"""Whose data: a namespace, or one subject in it (an agent, a session, a metadata
subject id, or explicit memory ids). Export and erasure share this selector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework import serializers

from apps.core.validation import StrictSerializer, validate
from apps.memories import stores
from apps.memories.models import Memory
from apps.memories.subjects import SUBJECT_KEY, naming_subject
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import managed_namespace

SUBJECT_FIELDS = ("agent_id", "session_id", "subject_id", "ids")


class SelectorInput(StrictSerializer):
    openapi_at_most_one_of = SUBJECT_FIELDS  # the schema says validate()'s rule
    namespace = serializers.CharField(required=False, max_length=64, help_text="The namespace "
                                      "(a namespace key may leave it out).")
    agent_id = serializers.CharField(required=False, max_length=128)
    session_id = serializers.CharField(required=False, max_length=128)
    subject_id = serializers.CharField(required=False, max_length=128, help_text=(
        f'Memories whose metadata has "{SUBJECT_KEY}" equal to this.'))
    ids = serializers.ListField(child=serializers.UUIDField(), required=False, min_length=1,
                                max_length=settings.MEMORYWEB_LIMITS["max_batch"])

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in SUBJECT_FIELDS if name in attrs]
        if len(given) > 1:
            raise serializers.ValidationError({given[1]: f"give one of {', '.join(SUBJECT_FIELDS)}"
                                               f", not {' and '.join(given)}."})
        return attrs


@dataclass(frozen=True)
class Selector:
    namespace: Namespace
    #: (field, value) of the subject, or None: the whole namespace.
    subject: tuple[str, Any] | None

    def memories(self) -> QuerySet[Memory]:
        """The selected memories (expired ones too: they are still held)."""
        found = Memory.objects.filter(namespace=self.namespace)
        if self.subject is None:
            return found
        field, value = self.subject
        if field == "ids":
            return found.filter(pk__in=value)
        if field == "subject_id":  # the shared rule (apps/memories/subjects.py)
            return found.filter(pk__in=naming_subject(value, [self.namespace.pk]).values("pk"))
        return found.filter(**{field: value})

    def other_rows(self) -> dict[str, int]:
        """Per store, the rows about the subject apart from its memories (what an agent's
        key taught the gateway; apps/memories/stores.py's ``subject_*``): erased with it."""
        if self.subject is None:
            return {}
        return stores.subject_rows(self.namespace, *self.subject)

    @classmethod
    def described(cls, namespace: Namespace, described: Mapping[str, Any]) -> Selector:
        """The selector an erasure request recorded (``describe()``'s output) again."""
        subject = next(((name, described[name]) for name in SUBJECT_FIELDS if name in described),
                       None)
        return cls(namespace, subject)

    def describe(self) -> dict[str, Any]:
        """The selector as recorded in manifests, audit entries and certificates."""
        described: dict[str, Any] = {"namespace": self.namespace.slug}
        if self.subject is not None:
            field, value = self.subject
            described[field] = [str(i) for i in value] if field == "ids" else value
        return described


def select(principal: Principal, data: Mapping[str, Any], *, need_subject: bool = False
           ) -> Selector:
    """A validated selector on a namespace the principal manages (team or system admin)."""
    cleaned = validate(SelectorInput, dict(data))
    namespace = managed_namespace(principal, cleaned.get("namespace") or None)
    subject = next(((name, cleaned[name]) for name in SUBJECT_FIELDS if name in cleaned), None)
    if need_subject and subject is None:
        from apps.core.errors import InvalidInput

        raise InvalidInput(f"name the subject: one of {', '.join(SUBJECT_FIELDS)}.",
                           field="agent_id")
    return Selector(namespace, subject)
