"""A certified erasure that lands in the middle of a timeline build: the build read the
erased memory (and the nodes quoting it) before the erasure's commit and writes after it.

The erasure empties the nodes in its transaction; its own rebuild finds the tree's lease
held by the build and leaves them ``pending``; the build's writes re-check what they were
made from (apps/timeline/build.py ``_check_fresh``) and skip what the erasure changed. So
neither the erasure's check nor a check after the build finds the erased text, and the
next build rebuilds the pending nodes without it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from apps.core.summarizer import SourceText, Summary
from apps.core.summarizer_extractive import ExtractiveSummarizer
from apps.memories import stores
from apps.memories.models import Memory
from apps.timeline import erasure
from apps.timeline.build import build
from apps.timeline.models import Grip, NodeStatus, RollupNode, RollupSource
from tests.helpers.erasure import erase_through_requests
from tests.timeline.conftest import store

#: Commits for real: the erasure runs in another thread, on its own connection.
pytestmark = pytest.mark.django_db(transaction=True)
RARE = "zorblaxian"


class EraseMidway:
    """The offline summariser; the first time it is given the subject's text, it runs
    ``erase`` in another thread to the end before summarising (the build has read the
    memory, and has not written yet)."""

    name = "extractive"

    def __init__(self, erase):
        self.erase, self.real, self.result = erase, ExtractiveSummarizer(), {}

    def summarize(self, sources: Sequence[SourceText], *, max_chars: int,
                  focus: str = "") -> Summary:
        if not self.result and any(RARE in source.text for source in sources):
            def run() -> None:
                from django.db import connection
                try:
                    self.result["certificate"] = self.erase()
                except BaseException as exc:  # reported by the test
                    self.result["error"] = exc
                finally:
                    connection.close()
            thread = threading.Thread(target=run)
            thread.start()
            thread.join(60)
        return self.real.summarize(sources, max_chars=max_chars, focus=focus)


def _texts(alpha) -> str:
    return "\n".join([*RollupNode.objects.filter(namespace=alpha).values_list("summary", flat=True),
                      *(p for parts in RollupNode.objects.values_list("parts", flat=True)
                        for p in parts),
                      *Grip.objects.values_list("excerpt", flat=True)])


#: Where the memory that makes the next build redo Jan 30 goes: in Dana's segment (the
#: build is summarising that segment, from her memory, when the erasure lands), or in
#: another session (only the day is summarised again, from her segment's summary).
AFTER = {"segment": ("s1", "2024-01-30T09:08:00Z"), "day": ("s2", "2024-01-30T09:03:00Z")}


@pytest.mark.parametrize("reading", list(AFTER))
def test_an_erasure_during_a_build_leaves_no_erased_text(alpha, agent, history, team_admin,
                                                         system_admin, reading):
    dana = store(agent, {"dana": ("s1", "2024-01-30T09:07:00Z", f"Dana's {RARE} allergy: nuts.")},
                 metadata={"subject_id": "dana"})["dana"]
    assert build(alpha).ok
    assert RARE in _texts(alpha)
    erased = Memory.objects.get(pk=dana)
    done = stores.Erased(ids=(str(erased.pk),), hashes=(erased.content_hash,))
    store(agent, {"more": (*AFTER[reading], "Lee restarted the staging VPN.")})
    midway = EraseMidway(lambda: erase_through_requests(team_admin, system_admin,
                                                        {"subject_id": "dana"}))

    report = build(alpha, summarizer=midway)

    assert "error" not in midway.result, midway.result.get("error")
    certificate = midway.result["certificate"]
    assert certificate["verification"]["rollups"] == {"remaining": 0, "ok": True}
    # The build wrote nothing made from what it read before the erasure.
    assert any("changed during the build" in failure["error"] for failure in report.failed)
    assert not Memory.objects.filter(pk=dana).exists()
    assert erasure.remaining(alpha, done) == 0  # its fingerprints are still remembered
    assert RARE not in _texts(alpha)
    assert RollupNode.objects.filter(namespace=alpha, status=NodeStatus.PENDING).exists()

    assert build(alpha).ok  # the next build rebuilds the pending nodes without it
    assert not RollupNode.objects.filter(namespace=alpha, status=NodeStatus.PENDING).exists()
    assert erasure.remaining(alpha, done) == 0
    assert RARE not in _texts(alpha)
    assert not RollupSource.objects.filter(memory_id=dana).exists()
    assert "Lee restarted the staging VPN." in _texts(alpha)
