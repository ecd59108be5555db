"""From a summary's parts to grips: each part tied to the source memories that support it,
with the excerpt of each.

A segment summarises memories, so a part's evidence names them directly. Above, a node
summarises its children's summaries: a part's evidence is an excerpt of a child's
summary, and the grips are the child's own grips of the parts that excerpt overlaps — so
every grip, at every level, points at a source memory and quotes a substring of it.
What a summariser returns is checked, not trusted: a source id it was not given, or an
excerpt that is not in the source, is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from apps.core.summarizer import PART_SEPARATOR, Summary
from apps.timeline import conf


@dataclass(frozen=True)
class GripSpec:
    part: int
    memory_id: str
    excerpt: str


@dataclass(frozen=True)
class ChildGrips:
    """A child node as its parent's build sees it: its summary's parts and their grips."""

    parts: Sequence[str]
    grips: Sequence[GripSpec]

    @property
    def text(self) -> str:
        return PART_SEPARATOR.join(self.parts)


def evidence(summary: Summary, texts: Mapping[str, str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each part's text with its (source id, excerpt) pairs that hold: a source among the
    inputs, an excerpt found in its text. Empty parts are left out."""
    found = []
    for part in summary.parts:
        if not part.text.strip():
            continue
        pairs = [(source, excerpt) for source, excerpt in zip(part.source_ids, part.excerpts,
                                                              strict=False)
                 if excerpt and source in texts and excerpt in texts[source]]
        found.append((part.text, pairs))
    return found


def memory_grips(parts: Sequence[tuple[str, list[tuple[str, str]]]]) -> list[GripSpec]:
    """A segment's grips: the parts' evidence names memories."""
    return [GripSpec(index, source, excerpt)
            for index, (_, pairs) in enumerate(parts) for source, excerpt in pairs]


def child_grips(parts: Sequence[tuple[str, list[tuple[str, str]]]],
                children: Mapping[str, ChildGrips]) -> list[GripSpec]:
    """A higher node's grips: for each part, the grips of the child parts its excerpts
    overlap (at most ``GRIPS_PER_PART`` per part, each memory and excerpt once)."""
    grips: list[GripSpec] = []
    for index, (_, pairs) in enumerate(parts):
        seen: set[tuple[str, str]] = set()
        for source, excerpt in pairs:
            child = children.get(source)
            if child is None:
                continue
            for grip in _overlapped(child, excerpt):
                key = (grip.memory_id, grip.excerpt)
                if key not in seen and len(seen) < conf.GRIPS_PER_PART:
                    seen.add(key)
                    grips.append(GripSpec(index, grip.memory_id, grip.excerpt))
    return grips


def _overlapped(child: ChildGrips, excerpt: str) -> list[GripSpec]:
    """The child's grips of the parts that ``excerpt`` (a substring of its summary) spans."""
    at = child.text.find(excerpt)
    if at < 0:
        return []
    end, spans, offset = at + len(excerpt), [], 0
    for index, text in enumerate(child.parts):
        if offset < end and at < offset + len(text):
            spans.append(index)
        offset += len(text) + len(PART_SEPARATOR)
    wanted = set(spans)
    return [grip for grip in child.grips if grip.part in wanted]
