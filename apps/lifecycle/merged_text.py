"""A merged memory's text (docs/lifecycle.md, "Merged text"): the survivor's own
(``member``, the default: nothing new is written) or the summarizer's text of the group
(``summary``: ``MEMORYWEB_SUMMARIZER``, offline extractive by default).

A merged text is written as a versioned edit of the survivor through the write path,
marked ``{"content": {"before", "after", "by": "merge_text", "from": [members]}}`` (and
``"summarizer"`` when no person gave it), so a certified erasure of any member reverts it
and scrubs it from every version (apps/memories/merge_marks.py), and an unmerge that
releases a member it drew on reverts a summarizer's text (a person's is theirs: kept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings

from apps.audit.log import record as audit
from apps.core import envelope
from apps.core.errors import InvalidInput, Unavailable
from apps.core.summarizer import SourceText, SummarizerError, get_summarizer
from apps.memories import merge_marks, schemas, writes
from apps.memories.models import Memory
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

MEMBER, SUMMARY = "member", "summary"
CHOICES = (MEMBER, SUMMARY)
MERGE_TEXT, UNMERGE = merge_marks.MERGE_TEXT, merge_marks.UNMERGE


def asked(ns: Namespace, cleaned: Mapping[str, Any]) -> str:
    """The request's ``merged_text``, else the namespace's ``consolidation.merged_text``,
    else ``member``."""
    return cleaned.get("merged_text") or (ns.consolidation or {}).get("merged_text") or MEMBER


def summaries(groups: list[tuple[str, list[str]]], contents: Mapping[str, str],
              progress: Callable[[str, int, int], None] | None = None
              ) -> tuple[str, dict[str, str]]:
    """The summarizer's text of each group (``(survivor, members)``, texts in
    ``contents``), keyed by survivor, where it differs (spacing aside) from the survivor's
    own; and the summarizer's name. The survivor's text comes first (the summarizer keeps
    input order where nothing else orders it); the bound is twice the longest member,
    within the content limit. A summarizer that fails refuses the whole call with a 503
    (nothing merged yet): a merged memory never says half a text. A text no memory may
    hold (the schema refuses it, or it reads as a sealed envelope) keeps the survivor's
    own for that group."""
    summarizer = get_summarizer()
    cap = settings.MEMORYWEB_LIMITS["max_content_bytes"] // 4  # UTF-8: up to 4 bytes a char
    texts: dict[str, str] = {}
    for survivor, members in groups:
        order = [survivor, *(m for m in members if m != survivor)]
        longest = max(len(contents[m]) for m in order)
        try:
            summary = summarizer.summarize([SourceText(m, contents[m]) for m in order],
                                           max_chars=max(1, min(2 * longest, cap)))
        except SummarizerError as exc:
            raise Unavailable(f"the summarizer failed ({exc}); nothing was merged: retry "
                              "shortly, or ask for merged_text \"member\".",
                              field="merged_text") from exc
        try:
            text = schemas.validate(schemas.MemoryUpdate, {"content": summary.text},
                                    partial=True)["content"]
        except InvalidInput:
            text = contents[survivor]
        if not envelope.is_sealed_text(text) \
                and " ".join(text.split()) != " ".join(contents[survivor].split()):
            texts[survivor] = text
        if progress:
            progress("summaries", 1, len(groups))  # one more done: stages count increments
    return summarizer.name, texts


def say(write: writes.Write, principal: Principal, memory: Memory, content: str,
        members: list[Any], *, summarizer: str = "") -> None:
    """``memory`` (the survivor, locked) says ``content`` drawn from ``members``: a
    versioned edit through the write path marked ``"by": "merge_text"`` with the members
    it was merged ``from`` (audited as an edit). ``summarizer`` names who wrote a text no
    person gave (it is then no correction of the survivor's agent)."""
    edits: dict[str, Any] = {"content": {"before": memory.content, "after": content,
                                         "by": MERGE_TEXT, "from": [str(m) for m in members]}}
    if summarizer:
        edits["content"]["summarizer"] = summarizer

    def entry(edited: Memory, changed: dict[str, Any]) -> None:
        audit(principal, "memory.update", namespace=edited.namespace, record_ids=[edited.pk],
              summary={"fields": sorted(changed), "version": edited.version,
                       "by": MERGE_TEXT})

    write.update(memory, {"content": content}, edits, embeddings=None, actor=principal,
                 audit=entry, correction=not summarizer)


def unsay(write: writes.Write, principal: Principal, survivor: Memory,
          released: list[Any]) -> bool:
    """After a release: the survivor's text, when the summarizer wrote it (``merged_text:
    summary``) from a released memory or on top of such a text, goes back to the text
    before the first of them, as a versioned edit marked ``by: unmerge``; whether it did.
    The taint carries forward as an erasure's does (merge_marks): a second merge's
    summary of the first summary and another member still holds the released memory's
    words. A person's text (an edit, or a text given at a merge) is theirs: kept."""
    gone = {str(pk) for pk in released}
    replace: dict[str, str] = {}
    for version in survivor.versions.order_by("version"):  # oldest first
        change = version.changes.get("content") if isinstance(version.changes, dict) else None
        if not isinstance(change, Mapping) or change.get("by") != MERGE_TEXT \
                or not change.get("summarizer"):
            continue
        before, after = change.get("before"), change.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        if gone & set(change.get("from") or ()) or before in replace:
            replace[after] = replace.get(before, before)
    back = replace.get(survivor.content)
    if back is None or back == survivor.content:
        return False
    write.update(survivor, {"content": back},
                 {"content": {"before": survivor.content, "after": back, "by": UNMERGE}},
                 embeddings=None, actor=principal, audit=lambda *_: None, correction=False)
    return True
