"""Deterministic agent memories with known near-duplicates and hard negatives (bench/consolidation.py).

A memory states one **fact**: a template (what kind of statement: "the staging database runs
PostgreSQL 15 on db-2") with its slot values and a polarity (said, or negated). A **recipe**
says how that fact is written: which of the template's phrasings (clauses in another order),
how dates are spelled, and surface edits (a "Note:" prefix, abbreviations such as DB/k8s/
30s, synonyms, lower case, punctuation). The same fact under two recipes is a paraphrase a
person would merge; two facts one slot apart under the same recipe are a hard negative
("The API timeout is 30 seconds" / "... 45 seconds"), which must never be merged.

Why templates and not a data set: the ground truth must be exact (which memories say the
same thing, which differ in exactly one number, name, date or negation), the corpus must be
as large as asked (10,000 or 100,000) without a download, and the same seed must give the
same corpus on any machine. Every memory, distractors included, draws its recipe from the
same distribution, so a prefix or an abbreviation is no tell of a duplicate.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, NamedTuple

try:
    from bench.consolidation_vocab import (
        ABBREV,
        BY_NAME,
        DATE_STYLES,
        DAY_SPAN,
        DEPENDS,
        FIRST_DAY,
        MONTHS,
        PREFIXES,
        SUFFIXES,
        SYNONYMS,
        TEMPLATES,
        VOCAB,
        Template,
    )
except ImportError:  # run as a script, bench/ is sys.path[0]
    from consolidation_vocab import (
        ABBREV,
        BY_NAME,
        DATE_STYLES,
        DAY_SPAN,
        DEPENDS,
        FIRST_DAY,
        MONTHS,
        PREFIXES,
        SUFFIXES,
        SYNONYMS,
        TEMPLATES,
        VOCAB,
        Template,
    )

PUNCT = ("nodot", "semicolon", "dash")
ORDER = ("abbrev", "syn", "punct", "prefix", "suffix", "lower")
KEEP_CASE = {"numpy"}  # a name written in lower case, even at the start of a sentence


def _values(vocab: str, slots: dict[str, Any]) -> list[Any]:
    values = VOCAB[vocab][1]
    return values[slots[DEPENDS[vocab]]] if isinstance(values, dict) else values


def _proper_words() -> set[str]:
    words = {"I"}
    for key in ("person", "project", "customer", "city", "engine", "lang", "human", "cloud", "editor",
                "citool", "lib", "channel", "plan", "vendor", "tool", "feature"):
        values = VOCAB[key][1]
        for value in ([v for vs in values.values() for v in vs] if isinstance(values, dict) else values):
            if value[:1].isupper():
                words.add(value.split()[0])
    return words


PROPER = _proper_words()


class Fact(NamedTuple):
    template: str
    values: tuple[tuple[str, Any], ...]  # (slot, value) in the template's slot order
    negated: bool = False


class Recipe(NamedTuple):
    form: int
    date_style: str
    edits: tuple[tuple[str, Any], ...] = ()


def fmt(vocab: str, value: Any, style: str) -> str:
    if vocab == "date":
        return {"long": f"{MONTHS[value.month - 1]} {value.day}, {value.year}",
                "short": f"{MONTHS[value.month - 1][:3]} {value.day}, {value.year}",
                "iso": value.isoformat(), "dmy": f"{value.day} {MONTHS[value.month - 1]} {value.year}"}[style]
    if vocab == "mday":
        month = MONTHS[value.month - 1]
        return {"long": f"{month} {value.day}", "short": f"{month[:3]} {value.day}",
                "iso": f"{month} {value.day}", "dmy": f"{value.day} {month}"}[style]
    return str(value)


def _capitalise(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text if first in KEEP_CASE or re.search(r"[\d.]", first) else text[:1].upper() + text[1:]


def _decapitalise(text: str) -> str:
    """After "Remember that": lower the first word unless it is a name, an acronym or an id."""
    first = re.split(r"[\s':,]", text, maxsplit=1)[0]
    if (first in PROPER or first in KEEP_CASE or (first.isupper() and len(first) > 1)
            or re.search(r"[\d.]", first)):
        return text
    return text[:1].lower() + text[1:]


def _apply(text: str, edit: tuple[str, Any]) -> str:
    name, arg = edit
    if name in ("abbrev", "syn"):
        table = {n: (p, r) for n, p, r in (ABBREV if name == "abbrev" else SYNONYMS)}
        for key in arg:
            pattern, repl = table[key]
            text = re.sub(pattern, repl, text)
        return text
    if name == "punct":
        if arg == "nodot":
            return text.rstrip(".")
        if arg == "semicolon":
            return re.sub(r", (?!\d)", "; ", text, count=1)
        return text.replace(": ", " - ", 1)
    if name == "prefix":
        prefix, lower_next = arg
        return prefix + (_decapitalise(text) if lower_next else text)
    if name == "suffix":
        end = "." if text.endswith(".") else ""
        return text.rstrip(".") + arg + end
    if name == "lower":
        return text.lower()
    raise ValueError(f"unknown edit {name}")


def render(fact: Fact, recipe: Recipe) -> str:
    """The memory's text: the fact in the recipe's phrasing, date style and edits."""
    template = BY_NAME[fact.template]
    forms = template.negated if fact.negated else template.forms
    vocab = dict(template.slots)
    text = forms[recipe.form % len(forms)].format(
        **{slot: fmt(vocab[slot], value, recipe.date_style) for slot, value in fact.values})
    text = _capitalise(text)
    for edit in sorted(recipe.edits, key=lambda e: ORDER.index(e[0])):
        text = _apply(text, edit)
    return text


def _edit(rng: random.Random, name: str, text: str) -> tuple[str, Any] | None:
    """A random edit of kind ``name`` that changes ``text``, or None if none applies."""
    if name in ("abbrev", "syn"):
        table = ABBREV if name == "abbrev" else SYNONYMS
        hits = [n for n, p, _ in table if re.search(p, text)]
        return (name, tuple(rng.sample(hits, rng.randint(1, min(3, len(hits)))))) if hits else None
    if name == "punct":
        options = [p for p in PUNCT if (p == "nodot" and text.endswith(".")) or
                   (p == "semicolon" and re.search(r", (?!\d)", text)) or (p == "dash" and ": " in text)]
        return ("punct", rng.choice(options)) if options else None
    if name == "prefix":
        return ("prefix", rng.choice(PREFIXES))
    if name == "suffix":
        return ("suffix", rng.choice(SUFFIXES))
    return ("lower", None)


def _recipe(rng: random.Random, fact: Fact, form: int | None = None, style: str | None = None,
            kinds: tuple[str, ...] = ()) -> Recipe:
    template = BY_NAME[fact.template]
    form = rng.randrange(len(template.forms)) if form is None else form
    style = style or rng.choices(DATE_STYLES, weights=(6, 2, 1, 1))[0]
    base = render(fact, Recipe(form, style))
    edits = [e for e in (_edit(rng, k, base) for k in kinds) if e is not None]
    return Recipe(form, style, tuple(edits))


def base_recipe(rng: random.Random, fact: Fact) -> Recipe:
    """Every memory's own writing: a third get one or two light edits, so an edit says
    nothing about whether a memory has a duplicate."""
    kinds: tuple[str, ...] = ()
    if rng.random() < 0.33:
        kinds = tuple(rng.sample(("prefix", "abbrev", "syn", "punct", "suffix", "lower"), rng.randint(1, 2)))
    return _recipe(rng, fact, kinds=kinds)


DIFFICULTIES = ("surface", "lexical", "rephrased")


def variant_recipe(rng: random.Random, fact: Fact, of: Recipe, difficulty: str) -> Recipe:
    """Another writing of the same fact: ``surface`` (the same phrasing, filler, casing,
    punctuation), ``lexical`` (abbreviations, synonyms, another date style), ``rephrased``
    (another phrasing: the clauses in another order, plus some of the above)."""
    n_forms = len(BY_NAME[fact.template].forms)
    if difficulty == "surface":
        kinds = tuple(rng.sample(("prefix", "suffix", "lower", "punct"), rng.randint(1, 2)))
        return _recipe(rng, fact, of.form, of.date_style, kinds)
    if difficulty == "lexical":
        kinds = ("abbrev", "syn") if rng.random() < 0.5 else (rng.choice(("abbrev", "syn")),)
        kinds += tuple(rng.sample(("prefix", "punct", "lower"), rng.randint(0, 1)))
        return _recipe(rng, fact, of.form, rng.choice(DATE_STYLES), kinds)
    form = rng.choice([f for f in range(n_forms) if f != of.form])
    kinds = tuple(rng.sample(("prefix", "abbrev", "syn", "punct", "suffix"), rng.randint(0, 2)))
    return _recipe(rng, fact, form, rng.choice(DATE_STYLES), kinds)


# --- facts -------------------------------------------------------------------------------

def _date(rng: random.Random) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=rng.randrange(DAY_SPAN))


def random_fact(rng: random.Random, template: Template) -> Fact:
    chosen: dict[str, Any] = {}
    for slot, vocab in template.slots:
        if vocab in ("date", "mday"):
            value = _date(rng)
            chosen[slot] = value.replace(year=2000) if vocab == "mday" else value
            continue
        options = [v for v in _values(vocab, chosen) if v not in chosen.values()]
        chosen[slot] = rng.choice(options)
    if template.symmetric:
        a, b = template.symmetric
        chosen[a], chosen[b] = sorted((chosen[a], chosen[b]))
    negated = bool(template.negated) and rng.random() < 0.25
    return Fact(template.name, tuple(chosen.items()), negated)


def hard_negative_kinds(template: Template) -> list[str]:
    kinds = sorted({VOCAB[v][0] for _, v in template.slots} & {"number", "name", "date"})
    return kinds + (["negation"] if template.negated else [])


def mutate(rng: random.Random, fact: Fact, kind: str) -> tuple[Fact, str]:
    """The same fact with one number, name or date changed, or its polarity flipped; and
    which slot changed ("negation" for the polarity)."""
    if kind == "negation":
        return fact._replace(negated=not fact.negated), "negation"
    template = BY_NAME[fact.template]
    values = dict(fact.values)
    slots = [s for s, v in template.slots if VOCAB[v][0] == kind]
    slot = rng.choice(slots)
    vocab = dict(template.slots)[slot]
    if vocab in ("date", "mday"):
        shift = rng.choice([d for d in range(-12, 13) if d] + [rng.randint(30, 400)])
        new = values[slot] + dt.timedelta(days=shift)
        new = new.replace(year=2000) if vocab == "mday" else new
    else:
        new = rng.choice([v for v in _values(vocab, values) if v not in values.values()])
    values[slot] = new
    if template.symmetric and slot in template.symmetric:
        a, b = template.symmetric
        values[a], values[b] = sorted((values[a], values[b]))
    return fact._replace(values=tuple((s, values[s]) for s, _ in template.slots)), slot


def facts_apart(a: Fact, b: Fact) -> int | None:
    """How many slots (the polarity counting as one) two facts of one template differ in;
    None across templates. A symmetric pair of slots counts as a set: {Omar, Oscar} and
    {Oscar, Petra} are one name apart."""
    if a.template != b.template:
        return None
    pair = BY_NAME[a.template].symmetric or ()
    va, vb = dict(a.values), dict(b.values)
    apart = sum(va[s] != vb[s] for s in va if s not in pair) + (a.negated != b.negated)
    if pair:
        apart += len(Counter(va[s] for s in pair) - Counter(vb[s] for s in pair))
    return apart


# --- the corpus ----------------------------------------------------------------------------

@dataclass
class Corpus:
    """Memories (the batch items) with their ground truth, index by index."""

    seed: int
    memories: list[dict[str, Any]] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    groups: list[list[int]] = field(default_factory=list)  # injected near-duplicate groups
    group_of: list[int | None] = field(default_factory=list)
    difficulty: list[str] = field(default_factory=list)  # "base" or a variant's DIFFICULTIES
    role: list[str] = field(default_factory=list)  # group / hard_negative / group+hard_negative / filler
    hard_negatives: list[dict[str, Any]] = field(default_factory=list)  # {a, b, kind, slot}

    def within_group_pairs(self) -> set[tuple[int, int]]:
        return {(a, b) for group in self.groups for a, b in combinations(sorted(group), 2)}

    def one_slot_apart_count(self) -> int:
        """Pairs of memories whose facts differ in exactly one slot or the polarity: the
        injected hard negatives and those the fillers made by chance (same-topic facts a
        merge must keep apart too). Counted per bucket of facts equal but for one slot."""
        buckets: dict[tuple, Counter] = defaultdict(Counter)
        for fact in self.facts:
            pair = BY_NAME[fact.template].symmetric or ()
            plain = [(s, v) for s, v in fact.values if s not in pair]
            both = tuple(sorted(v for s, v in fact.values if s in pair))
            keys = [(fact.template, "polarity", tuple(fact.values))]
            keys += [(fact.template, s, tuple(x for x in plain if x[0] != s), both, fact.negated)
                     for s, _ in plain]
            keys += [(fact.template, "pair", tuple(plain), rest, fact.negated)
                     for rest in (both[1:], both[:1])] if both else []
            for key in keys:
                buckets[key][fact] += 1
        pairs = 0
        for facts in buckets.values():
            size = sum(facts.values())
            pairs += size * (size - 1) // 2 - sum(c * (c - 1) // 2 for c in facts.values())
        return pairs

    def stats(self) -> dict[str, Any]:
        words = sorted(len(m["content"].split()) for m in self.memories)
        return {
            "memories": len(self.memories), "groups": len(self.groups),
            "in_groups": sum(len(g) for g in self.groups),
            "group_sizes": {str(k): v for k, v in sorted(Counter(len(g) for g in self.groups).items())},
            "within_group_pairs": len(self.within_group_pairs()),
            "variant_difficulty": dict(Counter(d for d in self.difficulty if d != "base")),
            "hard_negative_pairs": len(self.hard_negatives),
            "hard_negative_kinds": dict(Counter(h["kind"] for h in self.hard_negatives)),
            "hard_negatives_anchored_in_a_group": sum(h["anchored"] for h in self.hard_negatives),
            "fillers": self.role.count("filler"), "templates": len({f.template for f in self.facts}),
            "kinds": dict(Counter(m["kind"] for m in self.memories)),
            "one_slot_apart_pairs": self.one_slot_apart_count(),
            "words": {"min": words[0], "p50": words[len(words) // 2], "max": words[-1],
                      "mean": round(sum(words) / len(words), 1)},
        }


def _weights(cap: int = 2500) -> list[float]:
    """Templates are drawn in proportion to the distinct facts they can state, capped at
    ``cap``: topics come up about equally often, but a small template (a vendor choice
    among three) is not drawn far more often than it has facts, and a date does not make
    a template a thousand times likelier than a port number."""
    weights = []
    for template in TEMPLATES:
        space = 2 if template.negated else 1
        for _, vocab in template.slots:
            values = VOCAB[vocab][1]
            space *= DAY_SPAN if vocab == "date" else 365 if vocab == "mday" else (
                min(len(v) for v in values.values()) if isinstance(values, dict) else len(values))
        weights.append(min(space, cap))
    return weights


def generate(n: int, seed: int, groups: int, hard_negatives: int, anchored_share: float = 0.2) -> Corpus:
    """``n`` memories: ``groups`` near-duplicate groups of 2-4, ``hard_negatives`` pairs one
    slot apart (a share of them pairing a new memory with a group member), the rest
    distinct facts; shuffled. The same arguments give the same corpus."""
    rng = random.Random(seed)
    weights = _weights()
    used: set[Fact] = set()
    texts: set[str] = set()
    items: list[dict[str, Any]] = []  # fact, recipe, group, difficulty, role

    def fresh_fact(template: Template | None = None) -> Fact:
        for _ in range(1000):
            chosen = template or rng.choices(TEMPLATES, weights=weights)[0]
            fact = random_fact(rng, chosen)
            if fact not in used:
                return fact
        raise RuntimeError("the templates ran out of distinct facts: lower --n")

    def add(fact: Fact, recipe: Recipe, group: int | None, difficulty: str, role: str) -> int | None:
        text = " ".join(render(fact, recipe).split())
        if text in texts:
            return None
        texts.add(text)
        used.add(fact)
        items.append({"fact": fact, "recipe": recipe, "group": group, "difficulty": difficulty,
                      "role": role, "text": text})
        return len(items) - 1

    group_sizes = [rng.choice((2, 2, 3, 3, 4)) for _ in range(groups)]
    anchored = round(hard_negatives * anchored_share) if groups else 0
    need = sum(group_sizes) + 2 * (hard_negatives - anchored) + anchored
    if need > n:
        raise ValueError(f"{groups} groups and {hard_negatives} hard negatives need {need} memories; n={n}")
    group_members: list[list[int]] = []
    for g, size in enumerate(group_sizes):
        fact = fresh_fact()
        first = base_recipe(rng, fact)
        members: list[int | None] = [add(fact, first, g, "base", "group")]
        while len(members) < size:
            difficulty = rng.choices(DIFFICULTIES, weights=(35, 35, 30))[0]
            for _ in range(20):
                index = add(fact, variant_recipe(rng, fact, first, difficulty), g, difficulty, "group")
                if index is not None:
                    members.append(index)
                    break
            else:
                break  # no distinct writing found: a smaller group
        if None in members or len(members) < 2:  # never seen: a fresh fact's text is new
            raise RuntimeError(f"group {g}: no two distinct writings of {fact}")
        group_members.append(members)
    pairs: list[dict[str, Any]] = []
    kind_weights = {"number": 3, "name": 3, "date": 2, "negation": 2}
    for h in range(hard_negatives):
        kind = rng.choices(list(kind_weights), weights=list(kind_weights.values()))[0]
        is_anchored = h < anchored
        for _ in range(200):
            if is_anchored:
                anchor = rng.choice(rng.choice(group_members))
                fact, recipe = items[anchor]["fact"], items[anchor]["recipe"]
                if (kind not in hard_negative_kinds(BY_NAME[fact.template])
                        or items[anchor]["role"] != "group"):
                    continue
            else:
                template = rng.choice([t for t in TEMPLATES if kind in hard_negative_kinds(t)])
                fact = fresh_fact(template)
                recipe = base_recipe(rng, fact)
            other, slot = mutate(rng, fact, kind)
            if other in used or (not is_anchored and fact == other):
                continue
            if not is_anchored:
                anchor = add(fact, recipe, None, "base", "hard_negative")
                if anchor is None:
                    continue
            partner = add(other, recipe, None, "base", "hard_negative")
            if partner is None:
                continue
            if is_anchored:
                items[anchor]["role"] = "group+hard_negative"
            pairs.append({"a": anchor, "b": partner, "kind": kind, "slot": slot, "anchored": is_anchored})
            break
        else:
            raise RuntimeError(f"no hard negative of kind {kind} found")
    while len(items) < n:
        fact = fresh_fact()
        add(fact, base_recipe(rng, fact), None, "base", "filler")
    order = list(range(len(items)))
    rng.shuffle(order)
    new_index = {old: new for new, old in enumerate(order)}
    corpus = Corpus(seed=seed)
    for old in order:
        item = items[old]
        template = BY_NAME[item["fact"].template]
        tags = rng.sample([template.topic, template.name.replace("_", "-"), "work"], rng.randint(0, 2))
        memory = {"content": item["text"], "kind": template.kind, "tags": sorted(tags)}
        if rng.random() < 0.6:
            memory["session_id"] = f"session-{rng.randint(1, max(50, n // 25)):05d}"
        corpus.memories.append(memory)
        corpus.facts.append(item["fact"])
        corpus.group_of.append(item["group"])
        corpus.difficulty.append(item["difficulty"])
        corpus.role.append(item["role"])
    corpus.groups = [sorted(new_index[m] for m in members) for members in group_members]
    corpus.hard_negatives = [{**p, "a": new_index[p["a"]], "b": new_index[p["b"]]} for p in pairs]
    return corpus


def truth_rows(corpus: Corpus) -> list[dict[str, Any]]:
    """One JSON-able row per memory (``--dump-corpus``): text, fact, group, role."""
    partners: dict[int, list[int]] = defaultdict(list)
    for h in corpus.hard_negatives:
        partners[h["a"]].append(h["b"])
        partners[h["b"]].append(h["a"])
    return [{"index": i, "content": m["content"], "kind": m["kind"], "tags": m["tags"],
             "template": corpus.facts[i].template, "negated": corpus.facts[i].negated,
             "values": {s: str(v) for s, v in corpus.facts[i].values}, "group": corpus.group_of[i],
             "difficulty": corpus.difficulty[i], "role": corpus.role[i], "hard_negative_of": partners[i]}
            for i, m in enumerate(corpus.memories)]


# --- scoring proposals against the ground truth ---------------------------------------------

HARDER = ("base", "surface", "lexical", "rephrased")  # a pair is as hard as its harder member


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score(corpus: Corpus, ids: list[str], proposals: list[dict[str, Any]],
          conflicts: list[dict[str, Any]], examples: int = 8) -> dict[str, Any]:
    """Proposals (``members``: memory ids) and conflicts against the corpus, ``ids[i]``
    being memory i's id on the server.

    Pairwise: every two members of one proposal are a proposed merge; it is correct iff
    both are in one injected group; recall is over all within-group pairs. Groups: exact
    (a proposal with exactly the group's members) and complete (all in one proposal). A
    hard negative is merged if any memory stating one side's fact shares a proposal with
    one stating the other's (an anchored negative thus counts against the whole group).
    """
    index = {str(memory_id): i for i, memory_id in enumerate(ids)}
    unknown = 0
    clusters: list[list[int]] = []
    for proposal in proposals:
        members = [index.get(str(m)) for m in proposal.get("members", [])]
        unknown += sum(m is None for m in members)
        clusters.append(sorted({m for m in members if m is not None}))
    holder: dict[int, set[int]] = defaultdict(set)
    for k, cluster in enumerate(clusters):
        for m in cluster:
            holder[m].add(k)
    proposed = {pair for cluster in clusters for pair in combinations(cluster, 2)}
    truth = corpus.within_group_pairs()
    found = proposed & truth
    precision, recall = _ratio(len(found), len(proposed)), _ratio(len(found), len(truth))
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    cluster_sets = {frozenset(c) for c in clusters}
    exact = sum(frozenset(g) in cluster_sets for g in corpus.groups)
    none: set[int] = set()

    def together(members: list[int]) -> bool:  # all in one proposal
        return bool(set.intersection(*(holder.get(m, none) for m in members)))

    def is_pure(cluster: list[int]) -> bool:  # members of one injected group only
        return bool(cluster) and len({corpus.group_of[m] for m in cluster}) == 1 and (
            corpus.group_of[cluster[0]] is not None)

    complete = sum(together(g) for g in corpus.groups)
    pure = sum(is_pure(c) for c in clusters)
    stating: dict[Fact, list[int]] = defaultdict(list)
    for i, fact in enumerate(corpus.facts):
        stating[fact].append(i)
    partners: dict[int, set[int]] = defaultdict(set)
    facets: dict[frozenset, set[str]] = defaultdict(set)  # what the server said a pair differs in
    for conflict in conflicts:
        members = [index[str(m)] for m in conflict.get("members", []) if str(m) in index]
        for a, b in combinations(members, 2):
            partners[a].add(b)
            partners[b].add(a)
            facets[frozenset((a, b))].update(conflict.get("differs_in", conflict.get("facets")) or ())
    merged, as_conflict, right_facet = [], 0, 0
    for h in corpus.hard_negatives:
        side_a, side_b = stating[corpus.facts[h["a"]]], stating[corpus.facts[h["b"]]]
        if any(holder.get(a, none) & holder.get(b, none) for a in side_a for b in side_b):
            merged.append(h)
        said = [facets[frozenset((a, b))] for a in side_a for b in side_b if b in partners[a]]
        as_conflict += bool(said)
        right_facet += any(h["kind"] in f for f in said)
    injected = {tuple(sorted((h["a"], h["b"]))) for h in corpus.hard_negatives}
    false_kinds: Counter = Counter()
    false_examples = []
    for a, b in sorted(proposed - truth):
        apart = facts_apart(corpus.facts[a], corpus.facts[b])
        kind = ("injected hard negative" if (a, b) in injected else "other template" if apart is None
                else "one slot apart" if apart == 1 else "same template")
        false_kinds[kind] += 1
        if len(false_examples) < examples:
            false_examples.append({"kind": kind, "texts": [corpus.memories[a]["content"],
                                                           corpus.memories[b]["content"]]})
    by_difficulty: dict[str, list[int]] = {d: [0, 0] for d in HARDER[1:]}
    for a, b in truth:
        level = max(corpus.difficulty[a], corpus.difficulty[b], key=HARDER.index)
        by_difficulty[level][1] += 1
        by_difficulty[level][0] += (a, b) in found
    conflict_pairs = {(a, b) for a in partners for b in partners[a] if a < b}
    sims: dict[str, list[float]] = {"pure": [], "mixed": []}
    for cluster, proposal in zip(clusters, proposals, strict=True):
        value = proposal.get("min_similarity", proposal.get("similarity"))
        if isinstance(value, int | float) and cluster:
            sims["pure" if is_pure(cluster) else "mixed"].append(float(value))
    missed = [g for g in corpus.groups if not together(g)]
    return {
        "precision": precision, "recall": recall, "f1": f1,
        "proposed_pairs": len(proposed), "correct_pairs": len(found), "within_group_pairs": len(truth),
        "proposals": len(proposals), "pure_proposals": pure,
        "memories_in_proposals": len(holder), "largest_proposal": max(map(len, clusters), default=0),
        "memories_in_several_proposals": sum(len(v) > 1 for v in holder.values()),
        "unknown_ids": unknown,
        "groups": len(corpus.groups), "groups_exact": exact,
        "groups_exact_rate": _ratio(exact, len(corpus.groups)), "groups_complete": complete,
        "recall_by_difficulty": {d: {"found": f, "pairs": t, "recall": _ratio(f, t)}
                                 for d, (f, t) in by_difficulty.items()},
        "false_pairs_by_kind": dict(false_kinds),
        "hard_negatives": len(corpus.hard_negatives), "hard_negatives_merged": len(merged),
        "hard_negatives_merged_by_kind": dict(Counter(h["kind"] for h in merged)),
        "hard_negatives_as_conflicts": as_conflict, "hard_negatives_as_conflicts_right_facet": right_facet,
        "conflicts": len(conflicts), "conflict_pairs": len(conflict_pairs),
        "conflict_pairs_within_a_group": len(conflict_pairs & truth),
        "conflict_pairs_one_slot_apart": sum(facts_apart(corpus.facts[a], corpus.facts[b]) == 1
                                             for a, b in conflict_pairs),
        "similarity": {k: {"count": len(v), "min": min(v, default=None), "max": max(v, default=None)}
                       for k, v in sims.items()},
        "examples": {
            "false_pairs": false_examples,
            "hard_negatives_merged": [{"kind": h["kind"], "slot": h["slot"],
                                       "texts": [corpus.memories[h["a"]]["content"],
                                                 corpus.memories[h["b"]]["content"]]}
                                      for h in merged[:examples]],
            "groups_missed": [[corpus.memories[m]["content"] for m in g] for g in missed[:examples]]},
    }
