"""GDPR actions of the dashboard's memory list: export the selected memories, open an
erasure request for them (issue 17, item 1)."""

from __future__ import annotations


class MemoryPrivacyActionsMixin:
    """Export / erase actions for :class:`apps.memories.admin.MemoryAdmin`."""

    privacy_actions: list[str] = []
