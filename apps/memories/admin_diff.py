"""Readable diffs of memory versions for the dashboard: word-level for text, before ->
after for everything else. Output is escaped HTML (``<del>``/``<ins>``), never raw input."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def word_diff(before: Any, after: Any) -> SafeString:
    """``before`` and ``after`` as one text with removed words in ``<del>`` and added ones
    in ``<ins>``."""
    old, new = _TOKENS.findall(_text(before)), _TOKENS.findall(_text(after))
    parts: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(old[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{escape(''.join(old[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{escape(''.join(new[j1:j2]))}</ins>")
    return mark_safe("".join(parts))  # every piece above is escaped


def version_rows(memory, versions) -> list[dict[str, Any]]:
    """One row per edit, newest first: who, when, and each changed field's diff."""
    rows = []
    for version in versions:
        rows.append({
            "version": version.version, "changed_by": version.changed_by,
            "changed_at": version.changed_at,
            "fields": [{"name": name, "diff": word_diff(change.get("before"), change.get("after"))}
                       for name, change in sorted(version.changes.items())],
        })
    return rows
