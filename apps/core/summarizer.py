"""The summarizer interface: what rollups and digests call to condense many texts into a few
sentences, each tied back to the sources that support it (docs/summarizer.md).

Callers (the timeline's rollups, consolidation, the end-of-day digest) hand over
``SourceText`` items and get a ``Summary`` whose every ``SummaryPart`` names the ids of its
sources and, for each, an excerpt that is a substring of that source's text: the rollups
turn those into grips. Which summarizer runs is ``MEMORYWEB_SUMMARIZER``, read at each
``get_summarizer()`` call (so ``override_settings`` reaches it):

- ``extractive`` (default, apps/core/summarizer_extractive.py): offline, deterministic,
  picks the input's own sentences;
- ``openai`` (apps/core/summarizer_openai.py): any OpenAI-compatible chat-completions API.

A summarizer that cannot answer raises ``SummarizerError``; ``retryable`` tells a job
whether to keep its checkpoint and try again later (an upstream outage, a rate limit) or
to report the problem (a refused key, an answer it cannot use).

Core is the lowest layer: this module imports no app, and the provider imports the
capture package's redaction (a stdlib-only module outside ``apps``) only when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured

from apps.core import conf

#: The longest excerpt a part may carry per source (a grip shows it; the source holds the rest).
MAX_EXCERPT_CHARS = 300
#: What ``Summary.text`` puts between parts: one part per line.
PART_SEPARATOR = "\n"


@dataclass(frozen=True)
class SourceText:
    """One input: a memory or event, or a child rollup node being summarised upward."""

    id: str
    text: str
    occurred_at: datetime | None = None
    #: Who said it (a role or speaker); shown to an LLM provider beside the text.
    label: str = ""


@dataclass(frozen=True)
class SummaryPart:
    """One sentence (or bullet) of a summary and its evidence.

    ``source_ids`` holds at least one id from the input, without repeats;
    ``excerpts[i]`` is a substring of the text of the source ``source_ids[i]`` of at most
    ``MAX_EXCERPT_CHARS`` characters: what a grip quotes.
    """

    text: str
    source_ids: tuple[str, ...]
    excerpts: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    """A summary: its parts in reading order and the summarizer that wrote it
    (``extractive`` or ``openai:<model>``: stored with a rollup, so a rebuild with
    another summarizer is visible)."""

    parts: tuple[SummaryPart, ...]
    summarizer: str = ""

    @property
    def text(self) -> str:
        """The parts, one per line; at most the ``max_chars`` the summary was asked for."""
        return PART_SEPARATOR.join(part.text for part in self.parts)

    @property
    def source_ids(self) -> tuple[str, ...]:
        """Every source some part rests on, once each, in order of first use."""
        return tuple(dict.fromkeys(i for part in self.parts for i in part.source_ids))


class SummarizerError(Exception):
    """A summary could not be made. ``retryable``: the cause may pass (a timeout, a 429,
    a 5xx after the retries ran out), so a job keeps its checkpoint and runs again later;
    otherwise (a refused key, a malformed answer) retrying the same input will not help.
    ``retry_after``: seconds the upstream asked to wait, when it said so.

    The message never holds the API key (providers scrub upstream text before quoting it).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class Summarizer(Protocol):
    """What ``get_summarizer()`` returns. ``summarize`` must be safe to call from a job
    thread; it returns ``Summary(parts=())`` for no sources, keeps ``Summary.text`` within
    ``max_chars`` and raises only ``SummarizerError`` for failures of its own."""

    name: str

    def summarize(self, sources: Sequence[SourceText], *, max_chars: int,
                  focus: str = "") -> Summary: ...


#: The values of ``MEMORYWEB_SUMMARIZER``.
SUMMARIZERS = conf.SUMMARIZERS


def get_summarizer() -> Summarizer:
    """The summarizer the settings name now (``MEMORYWEB_SUMMARIZER``), built from the
    current settings: a changed setting applies to the next call."""
    config = conf.summarizer()
    if config.name == "extractive":
        from apps.core.summarizer_extractive import ExtractiveSummarizer

        return ExtractiveSummarizer()
    if config.name == "openai":
        from apps.core.summarizer_openai import OpenAISummarizer

        return OpenAISummarizer.from_settings(config)
    raise ImproperlyConfigured(f"MEMORYWEB_SUMMARIZER must be one of {', '.join(SUMMARIZERS)}; "
                               f"it is {config.name!r} (manage.py check says so too).")


def check_max_chars(max_chars: int) -> None:
    """Refuse a bound no summary can keep: a caller's bug, not an upstream failure."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a whole number of at least 1; it is {max_chars!r}")


def bounded_parts(parts: Sequence[SummaryPart], max_chars: int) -> tuple[SummaryPart, ...]:
    """The leading parts whose joined text fits ``max_chars``; when not even the first does,
    that part with its text cut at a word boundary (its evidence unchanged), so a summary
    never comes back empty only because the bound is small."""
    kept: list[SummaryPart] = []
    used = 0
    for part in parts:
        extra = len(part.text) + (len(PART_SEPARATOR) if kept else 0)
        if used + extra > max_chars:
            continue  # a shorter later part may still fit
        kept.append(part)
        used += extra
    if not kept and parts:
        first = parts[0]
        kept.append(SummaryPart(shorten(first.text, max_chars), first.source_ids, first.excerpts))
    return tuple(kept)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when there is one
    in the last fifth, with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    if space >= (limit * 4) // 5:
        cut = cut[:space]
    return cut.rstrip() + "…"
