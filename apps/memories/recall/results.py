"""What a recall returns (``RecallResult`` and its ``RecallHit``s), and the stopwatch
that fills its per-stage timings: every stage of the recall package uses them, so they
live apart from the stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from apps.memories import sharing
from apps.memories.models import Memory
from apps.memories.recall import ranking
from apps.memories.results import SharedMemory, memory_of
from apps.tenancy.models import Namespace


@dataclass(frozen=True)
class RecallHit:
    """One memory a recall found. ``found`` is the caller's own ``Memory`` or, from a
    namespace that shares with the caller's (``include_shared``, read-only), a
    ``SharedMemory``: the type decides how it is shown (apps.memories.representation)."""

    found: Memory | SharedMemory
    score: float
    #: channel -> {"raw", "rank", "contribution"}; contributions add up to ``score``.
    parts: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def memory(self) -> Memory:
        """The memory itself (own or shared), for its id and fields."""
        return memory_of(self.found)

    @property
    def shared(self) -> bool:
        """From another namespace, through a sharing grant."""
        return isinstance(self.found, SharedMemory)


@dataclass
class RecallResult:
    namespace: Namespace
    query: str
    k: int
    hits: list[RecallHit]
    #: The keyword query as the lexical engine saw it (lexical and hybrid modes).
    lexical_query: str | None = None
    #: Query terms left out of the keyword query as too common.
    lexical_dropped: tuple[str, ...] = ()
    mode: str = "vector"
    explain: bool = False
    #: The ranking settings in force (request over namespace over server).
    options: ranking.RecallOptions | None = None
    #: Milliseconds per stage (embed, vector, lexical, sql, rank), for Server-Timing.
    timings: dict[str, float] = field(default_factory=dict)
    #: The namespaces searched: the caller's own, then those sharing with it.
    sources: list[sharing.Source] = field(default_factory=list)
    #: An as-of recall's moment and what it rebuilt (``recall.as_of.AsOf``); None otherwise.
    as_of: Any = None


class _Stopwatch:
    def __init__(self, timings: dict[str, float], stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        elapsed = (time.perf_counter() - self.start) * 1000
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + elapsed
