"""The timeline's fixtures: a small namespace history spread over three days, two weeks'
worth of calendar (one ISO week straddling January and February 2024) and several
sessions, stored through the API; and a summariser stand-in that fails on demand.

The history (UTC):

- Tue 2024-01-30, session s1: 09:00, 09:05, 09:10, then 11:00 after a pause (a second
  segment); session s2: 09:02 (a segment of its own);
- Wed 2024-01-31, session s3: 14:00, 14:10;
- Fri 2024-02-02, session s4: 10:00, 10:20; and 12:00 without a session.

So: 6 segments, 3 days, 1 week (Mon 2024-01-29, whose Thursday is Feb 1: under
February), 2 months, 1 year.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from apps.core.summarizer import SourceText, SummarizerError, Summary
from apps.core.summarizer_extractive import ExtractiveSummarizer
from apps.timeline.models import RollupNode

HISTORY = {
    "launch": ("s1", "2024-01-30T09:00:00Z", "Dana moved the launch review to Friday."),
    "vpn": ("s1", "2024-01-30T09:05:00Z", "The staging deploy needs the VPN."),
    "flaky": ("s1", "2024-01-30T09:10:00Z", "Lee fixed the flaky login test."),
    "budget": ("s1", "2024-01-30T11:00:00Z", "After lunch we agreed the budget is 40k."),
    "offsite": ("s2", "2024-01-30T09:02:00Z", "Priya asked about the Berlin offsite dates."),
    "date": ("s3", "2024-01-31T14:00:00Z", "The Berlin offsite is on March 3."),
    "venue": ("s3", "2024-01-31T14:10:00Z", "Priya booked the venue near Alexanderplatz."),
    "release": ("s4", "2024-02-02T10:00:00Z", "Release 2.4 shipped to production."),
    "notes": ("s4", "2024-02-02T10:20:00Z", "Dana wrote the release notes."),
    "rota": ("", "2024-02-02T12:00:00Z", "Remember: the on-call rota changes monthly."),
}
COUNTS = {"segment": 6, "day": 3, "week": 1, "month": 2, "year": 1}


def store(caller, items: dict[str, tuple[str, str, str]], **extra) -> dict[str, str]:
    """Store ``name -> (session, occurred_at, content)`` in one batch; their ids by name."""
    body = {"memories": [{"content": content, "occurred_at": at,
                          **({"session_id": session} if session else {}), **extra}
                         for session, at, content in items.values()]}
    response = caller.post("/api/v1/memories/batch", body)
    assert response.status_code == 201, response.content
    return {name: row["id"] for name, row in zip(items, response.json()["results"], strict=True)}


@pytest.fixture
def history(agent) -> dict[str, str]:
    """The history above, stored by agent-1 in alpha; ids by name."""
    return store(agent, HISTORY)


class Flaky:
    """The offline summariser, except for inputs ``fails`` picks: those raise a retryable
    SummarizerError, as a provider does on a 429 or a timeout. Counts its calls."""

    name = "extractive"

    def __init__(self, fails: Callable[[Sequence[SourceText]], bool]):
        self.fails, self.calls, self.real = fails, 0, ExtractiveSummarizer()

    def summarize(self, sources: Sequence[SourceText], *, max_chars: int,
                  focus: str = "") -> Summary:
        self.calls += 1
        if self.fails(sources):
            raise SummarizerError("upstream answered 429 Too Many Requests", retryable=True)
        return self.real.summarize(sources, max_chars=max_chars, focus=focus)


@pytest.fixture
def flaky() -> Callable[..., Flaky]:
    return Flaky


@pytest.fixture
def tree(alpha) -> Callable[..., dict[str, list[RollupNode]]]:
    """alpha's timeline now: the nodes of each level (the whole namespace's, or an
    agent's), in time order."""
    def read(agent_id: str = "") -> dict[str, list[RollupNode]]:
        found: dict[str, list[RollupNode]] = {level: [] for level in COUNTS}
        for node in RollupNode.objects.filter(namespace=alpha, agent_id=agent_id).order_by(
                "start", "session_id"):
            found[node.level].append(node)
        return found
    return read
