"""Memory modes (seed 003's ``full`` / ``readonly`` / ``after`` / ``off``): whether a request
through a door that stores and recalls on its own (the gateway, apps/gateway; the drop-in
``/v1/store`` routes, apps/compat/memoryoss.py) may recall memories and may store them.

The rule belongs to the memories app, not to either door, because two sibling doors
honour it and neither may import the other (the layers, docs/architecture.md). The
namespace's default lives in its ``memory_mode`` setting, stored on tenancy's row and
checked here (registered from ``MemoriesConfig.ready`` through
apps/tenancy/namespace_settings.py)::

    {"default": "full", "allow_client_control": true, "after": "2026-01-01"}

A request may ask for another mode with ``X-Memory-Mode`` (and the date with
``X-Memory-After``) when the namespace allows client control; otherwise those headers are
ignored. A reader key never stores: its ``full`` is ``readonly`` and its ``after`` recalls
filtered without storing.

| mode       | recall                       | store |
|------------|------------------------------|-------|
| ``full``   | yes                          | yes   |
| ``readonly`` | yes                        | no    |
| ``after``  | only memories stored on or after the date | yes |
| ``off``    | no                           | no    |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from apps.core.errors import InvalidInput
from apps.core.roles import Action
from apps.core.validation import StrictSerializer, validate
from apps.tenancy.principal import Principal

MODES = ("full", "readonly", "after", "off")
DEFAULT_MODE = "full"
#: The request headers (as sent; looked up case-insensitively).
MODE_HEADER = "X-Memory-Mode"
AFTER_HEADER = "X-Memory-After"


class MemoryModeSettings(StrictSerializer):
    """A namespace's ``memory_mode``: the default mode of the gateway and the drop-in
    store routes, and whether a request may choose another."""

    default = serializers.ChoiceField(
        choices=MODES, required=False,
        help_text="full: recall and store; readonly: recall only; after: recall only memories "
        "stored on or after `after`, and store; off: neither (pure pass-through). Default full.")
    allow_client_control = serializers.BooleanField(
        required=False, help_text="Honour the X-Memory-Mode and X-Memory-After request headers "
        "(default true). False: the namespace's default always applies.")
    after = serializers.DateField(
        required=False, help_text="The date (YYYY-MM-DD) mode `after` recalls from when the "
        "request does not send X-Memory-After.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("default") == "after" and "after" not in attrs:
            raise serializers.ValidationError({"after": "default mode after needs a date."})
        return attrs


def validate_memory_mode_settings(value: Any) -> dict[str, Any]:
    """The ``memory_mode`` value checked and normalised (plain JSON); None or "" is {}."""
    if value in (None, ""):
        return {}
    cleaned = validate(MemoryModeSettings, value, prefix="memory_mode")
    if "after" in cleaned:
        cleaned["after"] = cleaned["after"].isoformat()
    return cleaned


@dataclass(frozen=True)
class ModeDecision:
    """What one request may do with memory, and why (the mode in force)."""

    mode: str
    recall: bool
    store: bool
    #: Mode ``after``: only memories stored on or after this moment are recalled.
    after: dt.datetime | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value.strip()
    return None


def _date(text: str, field: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{field} must be a date, YYYY-MM-DD; it is {text[:40]!r}.",
                           field=field) from None
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _requested(namespace: Any, headers: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The mode the namespace and (where it allows) the request ask for, and the
    namespace's setting. An unknown ``X-Memory-Mode`` is an InvalidInput naming it."""
    settings = getattr(namespace, "memory_mode", None) or {}
    mode = settings.get("default", DEFAULT_MODE)
    if settings.get("allow_client_control", True):
        asked = _header(headers, MODE_HEADER)
        if asked:
            if asked.lower() not in MODES:
                raise InvalidInput(f"{MODE_HEADER} must be one of {', '.join(MODES)}; it is "
                                   f"{asked[:40]!r}.", field=MODE_HEADER)
            mode = asked.lower()
    return mode, settings


def decide(principal: Principal, namespace: Any, headers: Mapping[str, str]) -> ModeDecision:
    """The mode of one request by ``principal`` in ``namespace`` (a tenancy Namespace)
    given its ``headers``. A bad header value, when headers count, is an InvalidInput
    naming the header (a 400): a client that asked for ``off`` must never get ``full``
    by a typo."""
    mode, settings = _requested(namespace, headers)
    after = None
    if mode == "after":
        after_text, after_field = settings.get("after"), "memory_mode.after"
        asked_after = _header(headers, AFTER_HEADER)
        if asked_after and settings.get("allow_client_control", True):
            after_text, after_field = asked_after, AFTER_HEADER
        if not after_text:
            raise InvalidInput(f"mode after needs a date: send {AFTER_HEADER}: YYYY-MM-DD "
                               "(or set the namespace's memory_mode.after).", field=AFTER_HEADER)
        after = _date(after_text, after_field)
    may_store = principal.can(Action.INGEST, namespace.pk)
    if mode == "full" and not may_store:
        mode = "readonly"  # a reader key is at most readonly
    return ModeDecision(mode=mode, recall=mode != "off",
                        store=mode in ("full", "after") and may_store, after=after)


def stores_nothing(namespace: Any, headers: Mapping[str, str]) -> str | None:
    """For the drop-in store routes: the mode (``off`` or ``readonly``) under which a store
    request stores nothing, else None (the store goes on and the service authorises it as
    usual, so a reader still gets its 403). Bad headers raise as in :func:`decide`."""
    mode, _ = _requested(namespace, headers)
    return mode if mode in ("off", "readonly") else None
