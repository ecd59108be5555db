"""An erasure's own check of the rollups (``remaining``) against the rebuilt timeline:
what a *remaining* memory says is that memory's to show, even where its words are also an
erased memory's.

Seen once in the schemathesis run (``DELETE /v1/forget/certified`` answered 503, "a store
still holds erased data", with ``rollups`` the only check failing): the rebuild after the
erasure summarises the remaining memories, and the offline summariser's parts are their
sentences (apps/core/summarizer_extractive.py ``split_units``). When an erased memory's
whole text is one sentence of a remaining memory, or an erased sentence is a sentence the
summariser splits out of a remaining memory where the fingerprints' splitter does not
(after a closing quote, an ellipsis, a CJK full stop), the rebuilt part quotes the
remaining memory verbatim, yet the check counted it: the whole-text hashes were let off
only for a memory whose *whole* text is the same, and the fingerprints only for those a
remaining memory's own sentences give. Nothing erased was left; the erasure still failed,
and so did every retry (the same rebuild, the same parts). Not a race: the same data fails
every time, and the fuzzer's data differs from run to run.
"""

from __future__ import annotations

import pytest

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode, RollupSource
from tests.helpers.callers import make_caller
from tests.helpers.erasure import erase_through_requests
from tests.timeline.conftest import store

#: Commits for real: the erasure's delete, its after-commit rebuild, then its check.
pytestmark = pytest.mark.django_db(transaction=True)

CASES = {
    # The erased memory's whole text is the second sentence of a remaining memory.
    "whole text": ("Priya called twice about the venue. The release ships on Friday.",
                   "The release ships on Friday."),
    # The summariser splits after a closing quote; the fingerprints' splitter does not.
    "sentence after a closing quote": (
        'Lee said "stop the deploy now." Then we rolled back the staging cluster',
        "Then we rolled back the staging cluster."),
    # ... nor after an ellipsis.
    "sentence after an ellipsis": (
        "Dana waited for the numbers… The quarterly budget review moved to Monday",
        "The quarterly budget review moved to Monday!"),
}


@pytest.mark.parametrize("kept, erased", list(CASES.values()), ids=list(CASES))
def test_a_remaining_memorys_sentence_that_an_erased_memory_also_said_passes_the_check(
        alpha, agent, team_admin, system_admin, kept, erased):
    other = make_caller(Role.AGENT, alpha, "agent-2")
    store(agent, {"kept": ("s1", "2024-01-30T09:00:00Z", kept)})
    store(other, {"erased": ("s1", "2024-01-30T09:05:00Z", erased)})
    assert build(alpha).ok

    certificate = erase_through_requests(team_admin, system_admin, {"agent_id": "agent-2"})

    assert certificate["verification"]["rollups"] == {"remaining": 0, "ok": True}
    assert not Memory.objects.filter(namespace=alpha, agent_id="agent-2").exists()
    # The rebuilt timeline quotes the remaining memory, the words the erased one shared.
    segment = RollupNode.objects.get(namespace=alpha, agent_id="", level="segment")
    assert segment.parts and all(part.rstrip("…") in kept for part in segment.parts)
    assert any(part.strip(".!") in erased for part in segment.parts)


def test_an_erased_sentence_the_remaining_memories_do_not_hold_still_fails_the_check(
        alpha, agent, team_admin, system_admin):
    """The check still catches a part quoting an erased memory that no remaining memory
    holds (here planted back after the rebuild, as a buggy summariser would write it)."""
    from apps.memories import stores
    from apps.timeline import erasure, fingerprints

    other = make_caller(Role.AGENT, alpha, "agent-2")
    kept = "Priya called twice about the venue."
    secret = "Lee said the staging cluster password rotates on Friday."
    store(agent, {"kept": ("s1", "2024-01-30T09:00:00Z", kept)})
    ids = store(other, {"erased": ("s1", "2024-01-30T09:05:00Z", f"Intro here. {secret}")})
    assert build(alpha).ok
    erased = Memory.objects.get(pk=ids["erased"])
    fingerprints.remember(alpha.pk, [erased.pk], fingerprints.of(erased.content))
    done = stores.Erased(ids=(str(erased.pk),), hashes=(erased.content_hash,))
    Memory.objects.filter(pk=erased.pk).delete()
    RollupSource.objects.filter(memory_id=erased.pk).delete()
    Grip.objects.filter(memory_id=erased.pk).delete()
    RollupNode.objects.filter(namespace=alpha).update(parts=[kept])
    assert erasure.remaining(alpha, done) == 0
    RollupNode.objects.filter(namespace=alpha, level="segment").update(parts=[kept, secret])
    assert erasure.remaining(alpha, done) == 1
