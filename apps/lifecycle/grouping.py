"""Groups of memories that say the same thing, never by comparing every pair.

1. **Candidate pairs**: each memory's ``NEIGHBOURS`` nearest among the content-only
   vectors (apps/lifecycle/neighbours.py; a stored vector may mix in the previous turn of
   its session: apps/memories/context.py), plus identical content. O(n·k) pairs, never
   O(n²).
2. **Pair check**: cosine at least the threshold, or a little below it when the words
   overlap strongly (Jaccard); never across a partition (kind, agent, GDPR subject:
   merging across them would hide a memory from a filtered recall or from its subject's
   erasure); never when :func:`facets.differences` finds a number, a name, a date or a
   negation that differs: such a pair is a *conflict*, reported instead; never when two
   words changed places (:func:`facets.reversal`). Tags may differ: the survivor takes the
   union of its group's tags (so a tag-filtered recall that found a member finds it),
   except a *guarded* tag (one a tag-scoped sharing grant names: gaining it would show the
   survivor to another namespace), which a pair may differ in only when one's tags hold
   the other's, as before.
3. **Swapped words**: where one or two words a side are all that differ, the model judges
   them (a synonym merges; another value does not). A swap it refuses *in place* (the same
   words in the same order around it: "... in staging" / "... in production") is another
   value, and the run remembers the two: a rephrasing whose differing words substitute
   one for the other is not merged either (the model is not asked about a rephrasing's
   words: too many differ).
4. **Groups**: connected components of the checked pairs, then a linkage inside each: a
   memory joins a group when it is alike by every check with one member, and with every
   member similar enough with nothing hard against it (no differing facet, no reversal,
   no swap refused in place, no remembered value substituted, tags that may merge). So
   a rephrasing whose words the model does not follow still joins the group of a member
   it repeats, while a chain A~B~C never merges A with a C that differs from it in a
   fact or a value. Groups are capped (``MAX_GROUP``); a bigger component is split.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.lifecycle import neighbours as nearest
from apps.lifecycle.facets import (
    Facets,
    differences,
    facets,
    in_place,
    rest_words,
    reversal,
    swapped_term,
    unpaired,
    with_known_names,
)

#: Nearest neighbours of each memory compared with it (tuning part: 10 -> 20 found 17
#: more duplicate pairs at the same precision; 30 two more).
NEIGHBOURS = 20
#: Memories per neighbour query (a ``neighbours`` callable's batches).
BATCH = 256
#: How far below the threshold a pair may be when its words overlap strongly.
LEXICAL_SLACK = 0.08
#: Word overlap (Jaccard) that earns the slack.
LEXICAL_OVERLAP = 0.6
#: Cosine of two words (the model's) at which a one-word swap is a synonym, not another value.
SYNONYM = 0.6
#: Word overlap, besides the differing value, at which two memories make the same statement
#: (then a differing number, name, date or negation is a conflict; below, two facts).
SAME_REST = 0.75
#: Characters the model reliably sees (MiniLM reads 256 word pieces); longer texts need
#: LONG_OVERLAP of their words in common as well.
MODEL_CHARS = 1000
LONG_OVERLAP = 0.9
#: Members of one group at most (a larger component is split).
MAX_GROUP = 20
#: Members of a component compared with each other at most (a larger one is cut).
MAX_COMPONENT = 400


TermSimilarity = Callable[[list[tuple[str, str]]], list[float]]


@dataclass
class Candidate:
    """A memory consolidation may merge, with what the check needs."""

    id: str
    content: str
    partition: tuple[Any, ...]
    rank: tuple[Any, ...]
    #: Its tags: the group's survivor is given every member's (:func:`merged_tags`), so a
    #: tag-filtered recall that found a member finds the survivor; see ``guarded`` in
    #: :func:`find_groups` for the tags it may not gain.
    tags: frozenset[str] = frozenset()
    facets: Facets = field(init=False)

    def __post_init__(self) -> None:
        self.facets = facets(self.content)


@dataclass(frozen=True)
class Conflict:
    a: str
    b: str
    similarity: float
    differs_in: tuple[str, ...]


@dataclass
class Group:
    """Members that say the same thing; ``survivor`` keeps saying it (the member that
    pins down most: numbers, dates, names; then importance, confidence, use, newest)."""

    members: list[str]
    survivor: str
    similarities: dict[tuple[str, str], float]
    #: The survivor's tags once merged: its own, then those only other members had.
    tags: tuple[str, ...] = ()

    @property
    def similarity(self) -> float:
        return float(np.mean(list(self.similarities.values())))

    @property
    def min_similarity(self) -> float:
        return float(min(self.similarities.values()))

    def to_survivor(self) -> dict[str, float]:
        """Each other member's similarity to the survivor (its lineage link's)."""
        found = {}
        for member in self.members:
            if member != self.survivor:
                key = (member, self.survivor) if member < self.survivor else (self.survivor, member)
                found[member] = self.similarities.get(key, self.min_similarity)
        return found


@dataclass
class Found:
    groups: list[Group]
    conflicts: list[Conflict]
    candidates: int
    pairs_checked: int


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def merged_tags(survivor: Iterable[str], members: Iterable[Iterable[str]]) -> list[str]:
    """The survivor's tags after a merge: its own in their order, then the tags only other
    members had (sorted, so a run is repeatable)."""
    own = list(dict.fromkeys(survivor))
    return own + sorted({t for tags in members for t in tags} - set(own))


def tags_may_merge(a: frozenset[str], b: frozenset[str], guarded: frozenset[str] | None,
                   max_tags: int | None) -> bool:
    """Whether two memories' tags allow a merge. Nested tags always do (the wider one
    survives, or a survivor holding both). Otherwise the survivor will gain the other's
    tags, which is safe unless one of them is ``guarded`` (None: every tag is, the old
    nested-only rule) or the union would exceed ``max_tags`` (the per-memory limit)."""
    if a <= b or b <= a:
        return True
    if guarded is None or (a ^ b) & guarded:
        return False
    return max_tags is None or len(a | b) <= max_tags


def find_groups(candidates: Sequence[Candidate], vectors: np.ndarray,
                neighbours: Callable[[np.ndarray], list[list[tuple[str, float]]]] | None,
                threshold: float, term_similarity: TermSimilarity,
                progress: Callable[[int], None] | None = None, *,
                guarded: frozenset[str] | None = None, max_tags: int | None = None,
                apart: frozenset[frozenset[str]] = frozenset()) -> Found:
    """Groups and conflicts among ``candidates`` (``vectors``: their content-only unit
    vectors, row by row). ``neighbours``: None to compare each with its ``NEIGHBOURS``
    nearest ``vectors`` (apps/lifecycle/neighbours.py), or ``neighbours(rows)``: each row's
    nearest ids with their similarity, asked in batches (ids that are not candidates are
    ignored).
    ``term_similarity(pairs)``: how alike two words are (the model's cosine), for pairs
    that differ in one word only: a synonym ("team" / "squad") may merge, another value
    ("staging" / "production") is a conflict.

    ``guarded``: tags a survivor may not gain (those of the namespace's tag-scoped sharing
    grants; None, the default: every tag, so only nested tags merge); ``max_tags``: the
    most tags a memory may hold (a group whose union is larger is not formed);
    ``apart``: pairs of ids a person kept apart (never in one group, nor listed)."""
    # A name written in lower case ("page selin") is still a name: the words another
    # memory capitalises inside a sentence, unless a normally written one has them in
    # lower case (a common word: "the Team plan" / "the team").
    known = (frozenset().union(*(c.facets.proper for c in candidates))
             - frozenset().union(*(c.facets.plain for c in candidates)))
    for candidate in candidates:
        candidate.facets = with_known_names(candidate.facets, known)
    index = {c.id: i for i, c in enumerate(candidates)}
    pairs: set[tuple[int, int]] = set()
    by_hash: dict[str, int] = {}
    for i, candidate in enumerate(candidates):  # identical content (dedup missed: imports)
        key = " ".join(candidate.content.split())
        if key in by_hash:
            pairs.add((by_hash[key], i))
        else:
            by_hash[key] = i
    if neighbours is None:
        for i, hits in enumerate(nearest.nearest(vectors, NEIGHBOURS, progress)):
            pairs.update((min(i, j), max(i, j)) for j, _ in hits)
    else:
        for start in range(0, len(candidates), BATCH):
            rows = vectors[start:start + BATCH]
            for offset, hits in enumerate(neighbours(rows)):
                i = start + offset
                for hit_id, _ in hits:
                    j = index.get(hit_id)
                    if j is not None and j != i:
                        pairs.add((min(i, j), max(i, j)))
            if progress:
                progress(len(rows))
    alike: dict[tuple[int, int], float] = {}
    conflicts: list[Conflict] = []
    floor = threshold - LEXICAL_SLACK
    terms = _Terms(term_similarity)
    swaps: dict[tuple[int, int], tuple[str, str]] = {}
    rephrased: dict[tuple[int, int], tuple[set[str], set[str]]] = {}
    for i, j in pairs:
        a, b = candidates[i], candidates[j]
        if a.partition != b.partition or not tags_may_merge(a.tags, b.tags, guarded, max_tags) \
                or (apart and frozenset((a.id, b.id)) in apart):
            continue
        similarity = float(np.dot(vectors[i], vectors[j]))
        if similarity < floor:
            continue
        if similarity < threshold and _jaccard(a.facets.words, b.facets.words) < LEXICAL_OVERLAP:
            continue
        differs = differences(a.facets, b.facets)
        if not differs and (_beyond_the_model(a, b) or reversal(a.facets, b.facets)):
            continue  # a reversal: who does what to whom changed; neither merged nor listed
        if not differs and (swap := swapped_term(a.facets, b.facets)) is not None:
            swaps[(i, j)] = swap
        elif len(differs) == 1 and _jaccard(rest_words(a.facets), rest_words(b.facets)) >= SAME_REST:
            # the same statement but for one thing: they may contradict
            conflicts.append(Conflict(*sorted((a.id, b.id)), round(similarity, 6), tuple(differs)))
        elif not differs:
            alike[(i, j)] = similarity
            only_a, only_b = unpaired(a.facets, b.facets)
            if only_a and only_b:  # more than two words a side: a rephrasing
                rephrased[(i, j)] = (only_a, only_b)
        # more than one difference: two facts about different things, neither merged nor linked
    terms.learn(list(swaps.values()))
    for (i, j), swap in swaps.items():
        if terms.synonyms(swap):
            alike[(i, j)] = float(np.dot(vectors[i], vectors[j]))
        elif in_place(candidates[i].facets, candidates[j].facets):
            terms.values.add(frozenset(swap))
        # else another value of a term ("staging" / "production"): two facts, kept apart;
        # not listed as a conflict (they rarely contradict, and would bury those that do)
    for pair, (only_a, only_b) in rephrased.items():
        if terms.substitutes_a_value(only_a, only_b):
            del alike[pair]
    groups = [group for component in _components(len(candidates), alike)
              for part in _parts(component)
              for group in _complete(part, candidates, vectors, floor, terms, guarded, max_tags,
                                     apart)]
    return Found(groups, sorted(conflicts, key=lambda c: (c.a, c.b)), len(candidates), len(pairs))


class _Terms:
    """The model's verdict on swapped words, asked once per pair of words (in batches),
    and the pairs of words it refused in place: another value wherever they appear."""

    def __init__(self, similarity: TermSimilarity) -> None:
        self._similarity = similarity
        self._known: dict[tuple[str, str], float] = {}
        #: Swaps refused in place ({"staging", "production"}, {"api payment", "billing
        #: service"}): each side one or two words (in swapped_term's spelling).
        self.values: set[frozenset[str]] = set()

    def learn(self, swaps: list[tuple[str, str]]) -> None:
        wanted = list(dict.fromkeys(s for s in swaps if s not in self._known))
        if wanted:
            self._known.update(zip(wanted, self._similarity(wanted), strict=True))

    def synonyms(self, swap: tuple[str, str]) -> bool:
        return self._known[swap] >= SYNONYM

    def substitutes_a_value(self, only_a: set[str], only_b: set[str]) -> bool:
        """Whether the words one text has and the other lacks replace one side of a swap
        refused in place by its other side (a rephrasing that also changed a value)."""
        for value in self.values:
            if len(value) == 2:
                x, y = (set(side.split()) for side in value)
                if (x <= only_a and y <= only_b) or (y <= only_a and x <= only_b):
                    return True
        return False


def _beyond_the_model(a: Candidate, b: Candidate) -> bool:
    """The model reads a text's first ~256 tokens only: past that, two memories alike at
    the start may differ at the end. Long ones are merged only when their words are nearly
    all the same."""
    if max(len(a.content), len(b.content)) <= MODEL_CHARS:
        return False
    return _jaccard(a.facets.words, b.facets.words) < LONG_OVERLAP


def _components(n: int, edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[root(i)] = root(j)
    found: dict[int, list[int]] = {}
    for i in range(n):
        found.setdefault(root(i), []).append(i)
    return [members for members in found.values() if len(members) > 1]


def _parts(component: list[int]) -> list[list[int]]:
    """A component too large to compare within (a chain through many near topics) in
    pieces of MAX_COMPONENT, so the complete-linkage step stays bounded."""
    return [component[i:i + MAX_COMPONENT] for i in range(0, len(component), MAX_COMPONENT)]


def _complete(component: list[int], candidates: Sequence[Candidate], vectors: np.ndarray,
              floor: float, terms: _Terms, guarded: frozenset[str] | None,
              max_tags: int | None, apart: frozenset[frozenset[str]] = frozenset()
              ) -> list[Group]:
    """Split a component into groups: greedily, strongest-connected first, at most
    MAX_GROUP each, their tags' union within ``max_tags``. A memory joins a group when it
    is alike by the same rules as a pair with at least one member (cosine at least
    ``floor``, no differing facet or reversal, no swapped term that is another value,
    nothing beyond the model's reach, tags that may merge, not kept apart by a person), and
    with every member nothing hard stands against it: all of those but a swap the model
    refused in a rephrasing (its words not in place), which the member it is alike with
    vouches for."""
    sub = vectors[component]
    similarity = sub @ sub.T
    size = len(component)
    ok = similarity >= floor
    swaps: dict[tuple[int, int], tuple[str, str]] = {}
    for x, y in itertools.combinations(range(size), 2):
        if not ok[x, y]:
            continue
        a, b = candidates[component[x]], candidates[component[y]]
        if ((apart and frozenset((a.id, b.id)) in apart)
                or differences(a.facets, b.facets) or _beyond_the_model(a, b)
                or reversal(a.facets, b.facets)
                or not tags_may_merge(a.tags, b.tags, guarded, max_tags)):
            ok[x, y] = ok[y, x] = False
        elif (swap := swapped_term(a.facets, b.facets)) is not None:
            swaps[(x, y)] = swap
        elif terms.values and terms.substitutes_a_value(*unpaired(a.facets, b.facets)):
            ok[x, y] = ok[y, x] = False
    hard = ~ok  # what no member vouches for
    terms.learn(list(swaps.values()))
    for (x, y), swap in swaps.items():
        if not terms.synonyms(swap):
            ok[x, y] = ok[y, x] = False
            a, b = candidates[component[x]].facets, candidates[component[y]].facets
            if in_place(a, b):  # another value where it stood
                hard[x, y] = hard[y, x] = True
    order = sorted(range(size), key=lambda x: -int(ok[x].sum()))
    groups: list[Group] = []
    placed: set[int] = set()
    for seed in order:
        if seed in placed:
            continue
        members = [seed]
        union = set(candidates[component[seed]].tags)
        for other in order:
            if other in placed or other == seed or len(members) >= MAX_GROUP:
                continue
            tags = candidates[component[other]].tags
            if (not any(hard[other, m] for m in members)
                    and any(ok[other, m] for m in members)
                    and (max_tags is None or len(union | tags) <= max_tags)):
                members.append(other)
                union |= tags
        if len(members) < 2:
            continue
        survivor = _survivor([candidates[component[m]] for m in members], guarded)
        if survivor is None:
            continue
        placed.update(members)
        ids = [candidates[component[m]].id for m in members]
        pairs = {}
        for x, y in itertools.combinations(members, 2):
            a, b = candidates[component[x]].id, candidates[component[y]].id
            pairs[(a, b) if a < b else (b, a)] = round(float(similarity[x, y]), 6)
        tags = merged_tags(sorted(survivor.tags), (candidates[component[m]].tags for m in members))
        groups.append(Group(sorted(ids), survivor.id, pairs, tuple(tags)))
    return groups


def _survivor(members: list[Candidate], guarded: frozenset[str] | None) -> Candidate | None:
    """The member that keeps saying it: of those that already hold every guarded tag of
    the group (it gains none), the one that pins down most (numbers, dates, names), then
    importance, confidence, use, the newest. With tags that may merge pairwise such a
    member exists (members that differ in a guarded tag are nested, so their guarded
    tags form a chain); None only if not (then the group is not formed)."""
    union = frozenset().union(*(m.tags for m in members))
    need = union if guarded is None else union & guarded
    eligible = [m for m in members if need <= m.tags]
    if not eligible:
        return None
    return max(eligible, key=lambda c: (c.facets.richness, *c.rank))
