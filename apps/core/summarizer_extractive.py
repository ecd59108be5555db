"""The offline summarizer: the input's own sentences that best cover it (docs/summarizer.md).

No network, no model, deterministic (the same sources in the same order give the same
summary), and fast enough for a day of 10,000 events. How it picks:

1. **Units.** Each source is split into sentences (after ``.``, ``!``, ``?``, ``…`` followed
   by a space and no lower-case letter, after the CJK full stop, exclamation and question
   marks, and at line breaks); a sentence
   longer than ``MAX_EXCERPT_CHARS`` is cut at spaces. Every unit is an exact substring of
   its source, so it is its own excerpt (a grip quotes it verbatim).
2. **Concepts.** A unit's content words (Unicode words, lower-cased, stop words, hashes and
   very long tokens left out, English-stemmed) are the concepts it covers. A concept's
   weight comes from the input alone (TF-IDF-like): ``log(1 + sf) * log((N + 1) / sf)``,
   with ``sf`` the number of units holding it and ``N`` the number of units. Words that
   recur across the period weigh most; words in every unit, and one-off tokens, little.
3. **Greedy coverage.** Units are picked one at a time by the weight of the concepts they
   add that no picked unit covers yet (a submodular coverage objective, so a lazy greedy
   with a heap is exact), times a bonus for names (capitalised words not at the start),
   numbers, dates and the caller's ``focus`` words, divided by the square root of the
   unit's length. A concept counts once: once a topic's words are covered, the next pick
   comes from another topic, so two topics in the input both appear. A unit whose words
   mostly repeat a picked one (Jaccard >= ``NEAR_DUPLICATE``) is skipped. Picking stops
   when nothing that still fits ``max_chars`` adds a concept.
4. **Order.** The picked units are given in chronological order (``occurred_at``; sources
   without one first, in input order; ties by input order and position in the source).

Ties are broken by input order, never by hashing or a clock.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

import snowballstemmer

from apps.core.summarizer import (
    MAX_EXCERPT_CHARS,
    PART_SEPARATOR,
    SourceText,
    Summary,
    SummaryPart,
    check_max_chars,
    shorten,
)

#: A unit sharing this share of its words with a picked one adds nothing new to read.
NEAR_DUPLICATE = 0.6
#: Bonus factors on a unit's gain: names, numbers and dates carry what a summary must keep.
NAME_BONUS, NUMBER_BONUS, DATE_BONUS, FOCUS_BONUS = 0.3, 0.3, 0.3, 1.0
#: The focus's own words weigh this many times their input weight.
FOCUS_WEIGHT = 3.0
#: Below this length a unit costs as much as one this long (short fragments are no bargain).
MIN_COST_CHARS = 40

#: CJK full stop, exclamation and question marks (end a sentence without a space after).
_CJK_ENDS = "\u3002\uff01\uff1f"
#: Closing quotes and brackets that stay with the sentence they end.
_CLOSERS = "\"'\u201d\u2019)\\]"
#: A run of end marks starts a match only at its first mark (the look-behinds): from every
#: mark of "....…" the run was re-scanned to find no space (quadratic: 31 s for 32 KB).
_SENTENCE_END = re.compile(f"(?<![.!?\u2026])([.!?\u2026]+[{_CLOSERS}]*)\\s+"
                           f"|(?<![{_CJK_ENDS}])([{_CJK_ENDS}]+)\\s*")
_WORD = re.compile("\\w(?:[\\w'\u2019-]*\\w)?")
_DIGIT = re.compile(r"\d")
_HASHLIKE = re.compile(r"(?=.*\d)(?=.*[a-f])[0-9a-f]{7,}")
_MONTHS = ("jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|"
           "june|july|august|september|october|november|december")
_DAYS = "mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|" \
        "saturday|sunday"
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "vs", "st",
                            "jr", "sr", "approx", "cf", "fig", "inc", "ltd", "jan",
                            "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
                            "dec"})
#: English function words (and chat filler) that say nothing about a period's content.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each few for from further get got had hadn't has hasn't have
haven't having he he'd he'll he's her here here's hers herself him himself his how how's i i'd
i'll i'm i've if in into is isn't it it's its itself just let's like me more most much must
mustn't my myself need no nor not now of off ok okay on once only or other ought our ours
ourselves out over own please same shall shan't she she'd she'll she's should shouldn't so
some such sure than thank thanks that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up
us very was wasn't we we'd we'll we're we've were weren't what what's when when's where
where's which while who who's whom why why's will with won't would wouldn't yes yeah you
you'd you'll you're you've your yours yourself yourselves one two also still even really
well back going want know think make made way use used using see seems
""".split())
#: A Snowball stemmer keeps its word in its own fields: one per thread (jobs run in threads).
_STEMMERS = threading.local()


def _stem(word: str) -> str:
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


@dataclass(slots=True)
class _Unit:
    source: int  # index into the sources
    start: int  # the unit is sources[source].text[start:end]
    end: int
    text: str
    terms: tuple[int, ...]  # concept ids, once each
    bonus: float  # multiplies the gain
    cost: float


def split_units(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` spans of ``text``'s sentences (each at most ``MAX_EXCERPT_CHARS``,
    stripped, non-empty): the candidates the extractive summarizer picks from, and how the
    provider finds the sentence that best matches a quote it cannot find verbatim."""
    spans: list[tuple[int, int]] = []
    line_start = 0
    for line in text.splitlines(keepends=True):
        _sentences(text, line_start, line_start + len(line.rstrip("\r\n")), spans)
        line_start += len(line)
    return spans


def _sentences(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    position = start
    for match in _SENTENCE_END.finditer(text, start, end):
        stop = match.end(1) if match.group(1) else match.end(2)
        if match.group(1) and (_abbreviation_before(text, position, match.start(1))
                               or (match.end() < end and text[match.end()].islower())):
            continue  # "e.g. this", "Dr. Smith", "3 p.m. today": one sentence
        _add_span(text, position, stop, spans)
        position = match.end()
    _add_span(text, position, end, spans)


def _abbreviation_before(text: str, start: int, dot: int) -> bool:
    """Whether the period at ``dot`` ends an abbreviation ("e.g.", "Dr.") or an initial."""
    word = text[max(start, dot - 8):dot].rsplit(None, 1)
    last = word[-1].lower().lstrip("(\"'") if word else ""
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Add ``text[start:end]`` stripped, cut at spaces into pieces of at most
    ``MAX_EXCERPT_CHARS`` (hard cuts where a piece has no space in its second half)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > MAX_EXCERPT_CHARS:
        cut = text.rfind(" ", start + MAX_EXCERPT_CHARS // 2, start + MAX_EXCERPT_CHARS + 1)
        piece_end = cut if cut > start else start + MAX_EXCERPT_CHARS
        _add_span(text, start, piece_end, spans)
        start = piece_end
        while start < end and text[start].isspace():
            start += 1
    if end > start and any(ch.isalnum() for ch in text[start:end]):
        spans.append((start, end))


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry content, lower-cased and stemmed (repeats kept)."""
    return [concept for token in _WORD.findall(text) if (concept := _concept(token))]


#: token -> its concept ("" when it carries none): the same tokens recur across a period.
_CONCEPTS: dict[str, str] = {}


def _concept(token: str) -> str:
    """The concept a token stands for: lower-cased, Snowball's English stem for ASCII words;
    "" for stop words, one letter, over-long tokens and hashes."""
    concept = _CONCEPTS.get(token)
    if concept is None:
        word = token.lower()
        if (word in STOPWORDS or len(word) > 24 or (len(word) < 2 and not word.isdigit())
                or _HASHLIKE.fullmatch(word)):
            concept = ""
        else:
            plain = word.replace("\u2019", "'")
            concept = _stem(plain) if plain.isascii() else word
        if len(_CONCEPTS) < 200_000:
            _CONCEPTS[token] = concept
    return concept


_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'll", "I'd"})
_DATE_WORDS = frozenset(f"{_MONTHS}|{_DAYS}|today|yesterday|tomorrow|tonight".split("|"))
_NUMERIC_DATE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
                           r"|\b\d{1,2}:\d{2}\b|\b(?:19|20)\d{2}\b")


def _analyse(text: str, focus: frozenset[str]) -> tuple[set[str], float]:
    """A sentence's concepts and its bonus: names (capitalised words after the first),
    numbers, dates (month and day names, today/yesterday/tomorrow, ISO and slashed dates,
    clock times, years) and the focus's words each raise it."""
    tokens = _WORD.findall(text)
    words = {concept for token in tokens if (concept := _concept(token))}
    bonus = 1.0
    if any(token[0].isupper() and token not in _NOT_NAMES for token in tokens[1:]):
        bonus += NAME_BONUS
    if _DIGIT.search(text):
        bonus += NUMBER_BONUS
        dated = _NUMERIC_DATE.search(text) is not None
    else:
        dated = False
    if dated or any(token.lower() in _DATE_WORDS for token in tokens):
        bonus += DATE_BONUS
    if focus and focus & words:
        bonus += FOCUS_BONUS
    return words, bonus


def _time_key(source: SourceText) -> float:
    when = source.occurred_at
    if when is None:
        return -math.inf
    if when.tzinfo is None:  # naive: taken as UTC, as the project stores times
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class ExtractiveSummarizer:
    """``MEMORYWEB_SUMMARIZER=extractive``: see the module's docstring for how it picks."""

    name = "extractive"

    def summarize(self, sources: Sequence[SourceText], *, max_chars: int,
                  focus: str = "") -> Summary:
        check_max_chars(max_chars)
        units, weights = self._units(sources, focus)
        chosen = self._pick(units, weights, max_chars)
        if not chosen and units:  # nothing adds a concept, or nothing fits: the longest, cut
            best = max(units, key=lambda unit: (len(unit.text), -unit.source, -unit.start))
            chosen = [best]
        chosen.sort(key=lambda unit: (_time_key(sources[unit.source]), unit.source, unit.start))
        parts = tuple(SummaryPart(shorten(unit.text, max_chars), (sources[unit.source].id,),
                                  (unit.text,)) for unit in chosen)
        return Summary(parts=parts, summarizer=self.name)

    def _units(self, sources: Sequence[SourceText],
               focus: str) -> tuple[list[_Unit], list[float]]:
        """Every source's sentences with their concept ids, and each concept's weight."""
        concept_ids: dict[str, int] = {}
        counts: list[int] = []  # units holding each concept
        focus_words = frozenset(content_words(focus))
        units = []
        for index, source in enumerate(sources):
            text = source.text or ""
            for start, end in split_units(text):
                sentence = text[start:end]
                words, bonus = _analyse(sentence, focus_words)
                terms = []
                for word in sorted(words):
                    concept = concept_ids.get(word)
                    if concept is None:
                        concept = concept_ids[word] = len(counts)
                        counts.append(0)
                    counts[concept] += 1
                    terms.append(concept)
                units.append(_Unit(index, start, end, sentence, tuple(terms), bonus,
                                   math.sqrt(max(len(sentence), MIN_COST_CHARS))))
        total = len(units)
        weights = [math.log1p(count) * math.log((total + 1) / count) for count in counts]
        for word in focus_words:
            if word in concept_ids:
                weights[concept_ids[word]] *= FOCUS_WEIGHT
        return units, weights

    @staticmethod
    def _pick(units: list[_Unit], weights: list[float], max_chars: int) -> list[_Unit]:
        """Lazy greedy coverage within ``max_chars`` (gains only fall as concepts are
        covered, so a stale gain at the top of the heap is an upper bound: re-scored and
        pushed back unless it still leads)."""
        covered = bytearray(len(weights))

        def ratio(unit: _Unit) -> float:
            gain = sum(weights[term] for term in unit.terms if not covered[term])
            return gain * unit.bonus / unit.cost

        heap = [(-ratio(unit), index) for index, unit in enumerate(units) if unit.terms]
        heapq.heapify(heap)
        chosen: list[_Unit] = []
        chosen_terms: list[frozenset[int]] = []
        used = 0
        while heap:
            _, index = heapq.heappop(heap)
            unit = units[index]
            extra = len(unit.text) + (len(PART_SEPARATOR) if chosen else 0)
            if used + extra > max_chars:
                continue  # the room only shrinks: it will never fit
            current = ratio(unit)
            if current <= 0:
                continue
            if heap and (-current, index) > heap[0]:
                heapq.heappush(heap, (-current, index))  # no longer the best: back in line
                continue
            terms = frozenset(unit.terms)
            if any(len(terms & other) >= NEAR_DUPLICATE * len(terms | other)
                   for other in chosen_terms):
                continue
            chosen.append(unit)
            chosen_terms.append(terms)
            used += extra
            for term in unit.terms:
                covered[term] = 1
        return chosen


def best_sentence(text: str, hint: str) -> str:
    """The sentence of ``text`` sharing the most content words with ``hint`` (the first on
    a tie; the first sentence when none shares any): the excerpt a provider's part gets
    when its quote is not in the source."""
    wanted = set(content_words(hint))
    best, best_score = "", -1
    for start, end in split_units(text):
        sentence = text[start:end]
        score = len(wanted & set(content_words(sentence)))
        if score > best_score:
            best, best_score = sentence, score
    return best or text[:MAX_EXCERPT_CHARS]
