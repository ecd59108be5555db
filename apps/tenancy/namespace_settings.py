"""Per-namespace settings that belong to apps above tenancy, checked by the app that owns them.

A namespace row carries settings other apps read (memories' ``recall_defaults``, and the
lifecycle's schedules to come). Tenancy stores them and serves them through its REST body
and admin form, but cannot know their rules: it sits below the apps that define them. So
each owning app registers a checker here from its ``AppConfig.ready`` (memories registers
``recall_defaults`` in apps/memories/apps.py), and every door that writes a namespace
runs the setting through :func:`clean` — the REST body (namespaces.py), the admin form and
``Namespace.clean`` alike. An unregistered setting is refused, never saved unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers


@dataclass(frozen=True)
class NamespaceSetting:
    """A namespace field whose value another app checks and normalises."""

    field: str
    #: Returns the normalised value or raises InvalidInput naming what is wrong.
    clean: Callable[[Any], Any]
    #: The serializer that describes the value in the OpenAPI schema.
    schema: type[serializers.Serializer]
    #: The part of the value only a system admin may change (it names server credentials
    #: or where data goes: the gateway's upstreams), or None. A team admin may change the
    #: rest, and send this part back unchanged.
    system_admin_part: Callable[[Any], Any] | None = None

    def system_admin_change(self, before: Any, after: Any) -> bool:
        """Whether going from ``before`` to ``after`` changes the system-admin part."""
        part = self.system_admin_part
        return part is not None and part(before or {}) != part(after or {})


_SETTINGS: dict[str, NamespaceSetting] = {}


def register(setting: NamespaceSetting) -> None:
    """Called once by the owning app's ``ready``; a second app claiming the field is a bug."""
    existing = _SETTINGS.get(setting.field)
    if existing is not None and existing != setting:
        raise RuntimeError(f"namespace setting {setting.field!r} is registered twice.")
    _SETTINGS[setting.field] = setting


def registered(field: str) -> NamespaceSetting:
    try:
        return _SETTINGS[field]
    except KeyError:  # fail closed: nothing is saved that its owner did not check
        raise RuntimeError(f"namespace setting {field!r} has no registered checker.") from None


def clean(field: str, value: Any) -> Any:
    """``value`` checked and normalised by the app that owns ``field`` (InvalidInput if bad)."""
    return registered(field).clean(value)


class NamespaceSettingField(serializers.JSONField):
    """A namespace setting in a request body: read as JSON; the service then runs it
    through :func:`clean`, whose InvalidInput names the exact nested field."""

    def __init__(self, setting: str, **kwargs: Any) -> None:
        self.setting = setting
        super().__init__(**kwargs)


class NamespaceSettingFieldSchema(OpenApiSerializerFieldExtension):
    """The OpenAPI schema shows the owner's serializer, as ``extend_schema_field`` would."""

    target_class = "apps.tenancy.namespace_settings.NamespaceSettingField"

    def map_serializer_field(self, auto_schema, direction):
        component = auto_schema.resolve_serializer(registered(self.target.setting).schema, direction)
        return component.ref
