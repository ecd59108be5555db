"""The erasure's check explains a part or grip excerpt by a remaining memory only in the
units the timeline cuts from that memory, never by a bare substring.

Found in review of dea9c19: a suspect part was explained when a remaining memory's
content merely contained it (``text in content``), with no word or sentence boundary and
no minimum length. An erased memory's whole text planted back as a part passed whenever
it occurred inside a remaining memory's *word* ("hunter2" in "hunter22", "Anna" in
"Annabelle", "ok" in "notebook"), though the summariser can never cut such a part from
that memory: it quotes the memory's sentences as ``split_units`` gives them (shortened
at a word boundary, with an ellipsis, when one is too long), and a grip quotes one of its
own memory's units. Each case counted before dea9c19 and passed after it.
"""

from __future__ import annotations

import pytest

from apps.core.roles import Role
from apps.memories import stores
from apps.memories.models import Memory
from apps.timeline import erasure, fingerprints
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode, RollupSource
from tests.helpers.callers import make_caller
from tests.timeline.conftest import store

pytestmark = pytest.mark.django_db


def _erased(alpha, agent, kept: str, secret: str) -> tuple[stores.Erased, str]:
    """``kept`` stored by agent-1, ``secret`` by agent-2, the timeline built, then the
    secret erased as the erasure would (its fingerprints remembered, its row, sources and
    grips gone) but its nodes not rebuilt: the test plants the stale text itself. Returns
    what the check is given and the kept memory's id."""
    other = make_caller(Role.AGENT, alpha, "agent-2")
    kept_id = store(agent, {"kept": ("s1", "2024-01-30T09:00:00Z", kept)})["kept"]
    secret_id = store(other, {"secret": ("s1", "2024-01-30T09:05:00Z", secret)})["secret"]
    assert build(alpha).ok
    erased = Memory.objects.get(pk=secret_id)
    fingerprints.remember(alpha.pk, [erased.pk], fingerprints.of(erased.content))
    done = stores.Erased(ids=(str(erased.pk),), hashes=(erased.content_hash,))
    Memory.objects.filter(pk=erased.pk).delete()
    RollupSource.objects.filter(memory_id=erased.pk).delete()
    Grip.objects.filter(memory_id=erased.pk).delete()
    RollupNode.objects.filter(namespace=alpha).update(parts=[])
    Grip.objects.filter(node__namespace=alpha).delete()
    assert erasure.remaining(alpha, done) == 0
    return done, kept_id


def _plant_part(alpha, *parts: str) -> None:
    RollupNode.objects.filter(namespace=alpha, agent_id="", level="segment").update(
        parts=list(parts))


def _plant_grip(alpha, memory_id: str, excerpt: str) -> None:
    node = RollupNode.objects.get(namespace=alpha, agent_id="", level="segment")
    Grip.objects.create(node=node, part=0, position=0, memory_id=memory_id, excerpt=excerpt)


REVIEWED = {
    "inside a longer word": ("The password is hunter22 for staging.", "hunter2"),
    "a name's prefix": ("Annabelle booked the venue.", "Anna"),
    "a word's middle": ("Check the notebook before leaving.", "ok"),
}


@pytest.mark.parametrize("kept, secret", list(REVIEWED.values()), ids=list(REVIEWED))
def test_an_erased_whole_text_inside_a_remaining_memorys_word_is_still_counted(
        alpha, agent, kept, secret):
    done, _ = _erased(alpha, agent, kept, secret)
    _plant_part(alpha, kept, secret)
    assert erasure.remaining(alpha, done) == 1


@pytest.mark.parametrize("kept, secret", list(REVIEWED.values()), ids=list(REVIEWED))
def test_a_grip_excerpt_inside_its_memorys_word_is_still_counted(alpha, agent, kept, secret):
    done, kept_id = _erased(alpha, agent, kept, secret)
    _plant_grip(alpha, kept_id, secret)
    assert erasure.remaining(alpha, done) == 1


def test_a_part_or_excerpt_that_is_a_remaining_memorys_sentence_passes(alpha, agent):
    kept = "Priya called twice about the venue. The release ships on Friday."
    done, kept_id = _erased(alpha, agent, kept, "The release ships on Friday.")
    _plant_part(alpha, "Priya called twice about the venue.", "The release ships on Friday.")
    _plant_grip(alpha, kept_id, "The release ships on Friday.")
    assert erasure.remaining(alpha, done) == 0


def test_a_grip_excerpt_is_explained_by_its_own_memory_only(alpha, agent):
    """A grip quotes the memory it names: another remaining memory's sentence does not
    explain it."""
    kept = "Priya called twice about the venue. The release ships on Friday."
    done, _ = _erased(alpha, agent, kept, "The release ships on Friday.")
    elsewhere = store(agent, {"other": ("s9", "2024-01-30T15:00:00Z", "Lee booked the room.")})
    _plant_grip(alpha, elsewhere["other"], "The release ships on Friday.")
    assert erasure.remaining(alpha, done) == 1


def test_a_shortened_part_passes_only_when_cut_at_a_word_boundary(alpha, agent):
    """A part the summariser shortened (``shorten``: cut at a space, an ellipsis added) is
    explained by the unit it starts; the same letters cut inside a word are not."""
    kept = "The quarterly budget review moved to Monday. Dana sent the numbers."
    done, _ = _erased(alpha, agent, kept, "The quarterly budget review moved…")
    _plant_part(alpha, "The quarterly budget review moved…")
    assert erasure.remaining(alpha, done) == 0

    done = _erased_again(alpha, "The quarterly budget rev…")
    _plant_part(alpha, "The quarterly budget rev…")
    assert erasure.remaining(alpha, done) == 1


def _erased_again(alpha, secret: str) -> stores.Erased:
    """Another memory erased beside the same remaining ones (by hash: no fingerprints)."""
    other = make_caller(Role.AGENT, alpha, "agent-3")
    secret_id = store(other, {"secret": ("s1", "2024-01-30T09:07:00Z", secret)})["secret"]
    erased = Memory.objects.get(pk=secret_id)
    done = stores.Erased(ids=(str(erased.pk),), hashes=(erased.content_hash,))
    Memory.objects.filter(pk=erased.pk).delete()
    return done


def test_a_sentence_quoting_an_erased_one_inside_a_longer_remaining_one_is_counted(
        alpha, agent):
    """Fingerprints: an erased sentence that a remaining memory holds only as the tail of
    a longer sentence of its own (verbatim, but no unit of it: the summariser cannot cut
    it out) does not explain a part quoting it; its sentence print is the erased
    memory's, not the remaining one's."""
    kept = "Yesterday Lee said: The staging cluster password rotates on Friday."
    secret = "Intro here. The staging cluster password rotates on Friday."
    done, _ = _erased(alpha, agent, kept, secret)
    _plant_part(alpha, "The staging cluster password rotates on Friday.")
    assert erasure.remaining(alpha, done) == 1
