"""The order in which hybrid recall's two channels answer, made certain without timing.

The vector side's helper thread is replaced by a pool whose futures either run at once
(the vector side finished before the keyword channel) or only when their result is asked
for (it was still running when the keyword hits were known): both orders happen in a
server (tests/memories/test_recall_prefetch.py, test_query_counts.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from apps.memories.recall import channels


class _Later:
    """A future still running when asked whether it is done; runs when its result is asked."""

    def __init__(self, fn, log: list[str]) -> None:
        self.fn, self.log = fn, log

    def done(self) -> bool:
        return False

    def result(self):
        self.log.append("vector side runs")
        return self.fn()


class _Pool:
    def __init__(self, still_running: bool, log: list[str]) -> None:
        self.still_running, self.log = still_running, log

    def submit(self, fn):
        if self.still_running:
            return _Later(fn, self.log)
        future: Future = Future()
        future.set_result(fn())
        return future


def vector_side(monkeypatch) -> Callable[[bool], list[str]]:
    """``vector_side(still_running)`` sets the order of the two channels and returns a
    log: "vector side runs" is appended when a still running side is made to run, and
    a test may append its own events to see what came before (the ``vector_side``
    fixture, tests/conftest.py)."""
    log: list[str] = []

    def use(still_running: bool) -> list[str]:
        monkeypatch.setattr(channels, "_channel_pool", _Pool(still_running, log))
        return log

    return use
