"""The admin's memory change form as a browser would post it."""

from __future__ import annotations


def memory_form(memory, **changes) -> dict:
    """The change form of ``memory`` with its current values (tags ``["a"]``, no
    metadata, no dates, no version rows) and ``changes`` applied."""
    data = {
        "content": memory.content, "kind": memory.kind, "tags": '["a"]', "metadata": "{}",
        "importance": memory.importance, "confidence": memory.confidence,
        "expires_at_0": "", "expires_at_1": "", "valid_from_0": "", "valid_from_1": "",
        "valid_until_0": "", "valid_until_1": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data
