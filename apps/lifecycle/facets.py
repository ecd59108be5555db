"""What two alike memories may disagree on: a number, a date, a name, a negation.

Consolidation merges memories that say the same thing. Two sentences can be close in
meaning (cosine 0.95 and more) and still contradict each other: "The API timeout is 30
seconds" and "... 45 seconds", "Maria leads the project" and "Anna leads ...", "we use
Redis" and "we do not use Redis". Such a pair is never merged: it is linked as
``conflicts_with`` and both stay (docs/lifecycle.md).

Each text is read once into its :class:`Facets` (linear in its length); a pair is
compared with :func:`differences` (linear in the facets). The rules lean to caution: a
paraphrase that changes a name ("Kubernetes" / "K8s") is left unmerged, which costs
recall; merging a contradiction would cost truth.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from functools import cached_property

from apps.memories.lexical import STOPWORDS

#: Number words a paraphrase may use instead of digits ("three retries" / "3 retries").
NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "hundred": "100", "thousand": "1000", "dozen": "12",
}
MONTHS = {
    "jan": "01", "january": "01", "feb": "02", "february": "02", "mar": "03", "march": "03",
    "apr": "04", "april": "04", "may": "05", "jun": "06", "june": "06", "jul": "07",
    "july": "07", "aug": "08", "august": "08", "sep": "09", "sept": "09", "september": "09",
    "oct": "10", "october": "10", "nov": "11", "november": "11", "dec": "12",
    "december": "12",
}
WEEKDAYS = {
    "monday": "mon", "mon": "mon", "tuesday": "tue", "tue": "tue", "tues": "tue",
    "wednesday": "wed", "wed": "wed", "thursday": "thu", "thu": "thu", "thurs": "thu",
    "friday": "fri", "fri": "fri", "saturday": "sat", "sat": "sat", "sunday": "sun",
    "sun": "sun",
}
#: What agents wrap a fact in: no part of what it says.
FILLER = frozenset("""note notes fyi reminder remember remembering confirmed discussed
mentioned twice record heads worth noted assistant per sync btw important update todo
apparently also said told still current currently""".split())
#: Words that flip what a sentence says.
NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor",
                       "without", "cannot", "can't", "won't", "don't", "doesn't", "didn't",
                       "isn't", "aren't", "wasn't", "weren't", "shouldn't", "mustn't",
                       "hasn't", "haven't", "hadn't", "couldn't", "wouldn't", "no longer",
                       # a few other languages' (the model is multilingual enough to pair
                       # them; the negation must not slip through)
                       "не", "нет", "ни", "nicht", "kein", "keine", "keinen", "nie",
                       "niemals", "pas", "jamais", "non", "nunca", "nada", "niet", "geen",
                       "inte", "ikke", "ei"})
#: Negation in scripts without spaces between words (Chinese, Japanese).
_CJK_NEGATION = re.compile("[不没沒无無非别別未]")
#: Units a number may carry ("5 min" / "5 minutes"; "5 minutes" / "5 hours" differ).
UNITS = {
    "ms": "ms", "millisecond": "ms", "milliseconds": "ms", "s": "second", "sec": "second",
    "secs": "second", "second": "second", "seconds": "second", "min": "minute",
    "mins": "minute", "minute": "minute", "minutes": "minute", "h": "hour", "hr": "hour",
    "hrs": "hour", "hour": "hour", "hours": "hour", "day": "day", "days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year",
    "years": "year", "yr": "year", "yrs": "year", "d": "day", "kb": "kb", "mb": "mb", "gb": "gb",
    "tb": "tb", "percent": "%", "%": "%", "k": "k", "m": "m",
}
#: Words whose swap turns a statement around (the model rates many of them alike:
#: enabled / disabled 0.77, small / large 0.79): one in each text is a contrast.
_OPPOSITES = """on:off up:down before:after above:below over:under next:last first:last
enabled:disabled enable:disable enabling:disabling fast:slow faster:slower small:large
small:big smaller:larger high:low higher:lower min:max minimum:maximum increase:decrease
increased:decreased increases:decreases more:less more:fewer open:closed allow:deny
allowed:denied allowed:blocked allow:block true:false yes:no start:stop started:stopped
start:end succeeded:failed success:failure pass:fail passed:failed accept:reject
accepted:rejected include:exclude included:excluded add:remove added:removed old:new
older:newer earlier:later early:late left:right inbound:outbound upload:download push:pull
online:offline valid:invalid sync:async synchronous:asynchronous light:dark hot:cold
strong:weak required:optional mandatory:optional primary:secondary primary:replica
leader:follower public:private internal:external read:write input:output likes:dislikes
like:dislike prefers:avoids always:never with:without increase:reduce win:lose won:lost
morning:afternoon morning:evening afternoon:evening morning:night evening:night am:pm
hourly:daily hourly:weekly daily:weekly daily:monthly weekly:monthly monthly:yearly
monthly:annually daily:yearly weekly:yearly monthly:quarterly quarterly:yearly"""
OPPOSITES = tuple(tuple(pair.split(":")) for pair in _OPPOSITES.split())


def _opposite_of(pairs: tuple[tuple[str, ...], ...]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for x, y in pairs:
        found.setdefault(x, set()).add(y)
        found.setdefault(y, set()).add(x)
    return {word: frozenset(others) for word, others in found.items()}


#: Each word of ``OPPOSITES`` with the words it is the opposite of: a pair is checked by
#: looking up its words (a dictionary look-up each), not by walking the whole list for
#: every pair (130 entries: most of a 100,000-memory dry run's pair checks).
OPPOSITE_OF = _opposite_of(OPPOSITES)
_OPPOSABLE = frozenset(OPPOSITE_OF)
#: Capitalised words that are no name: sentence openers, pronouns, labels agents prefix.
NOT_NAMES = frozenset("""a an the this that these those it its we our us i my me you your
he she they them their his her there here what when where which who why how if then
also and but or so note notes fyi reminder important update todo fact memory user
assistant agent please yes ok okay every each all some any most many more less
""".split())

#: Words in any script (a letter first), offsets after a word (UTC+3), numbers, and % (a unit).
_TOKEN = re.compile(r"[^\W\d_][\w'\u2019.-]*\w|[^\W\d_]|(?<=[^\W\d_])[+-]\d[\d,._:/-]*\d|"
                    r"(?<=[^\W\d_])[+-]\d|\d[\d,._:/-]*\d|\d|%")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASHED_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")
_POSSESSIVE = re.compile(r"['\u2019]s$")
#: A number right before or after a word ("may 2", "2 may"): "may" is then the month.
_NEAR_NUMBER = re.compile(r"\d\s+may\b|\bmay\s+\d", re.IGNORECASE)
#: A dotted or snake_case identifier (a domain, a file, a module, a field), of parts of two
#: letters or more: "api.acme.io", "node.js", "user_id"; not "e.g" or "a.m".
_IDENTIFIER = re.compile(r"^(?=.*?[^\W\d_]{2,}[._].*?[^\W\d_]{2,})[\w.]*[._][\w.]*$")
_NUMBER = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$|^\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class Facets:
    """What a text states that a paraphrase must keep: its numbers (and values with
    digits: db-2, v2.3.1, utc-8), dates and times, the names in it (capitalised words that
    are no common word), whether it negates, and its lower-cased words (to tell a
    substitution from an omission)."""

    numbers: frozenset[str]
    dates: frozenset[str]
    names: frozenset[str]
    negated: bool
    words: frozenset[str]
    #: The names capitalised inside a sentence (not its first word): proper nouns, which
    #: name someone wherever they appear, lower-cased too (:func:`with_known_names`).
    proper: frozenset[str] = frozenset()
    #: The words written in lower case in a text that capitalises (so no all-lower-case
    #: note): common words, whatever another text capitalises ("the Team plan").
    plain: frozenset[str] = frozenset()
    #: Its words in their order (lower case, possessives and wrapping left out): to tell a
    #: reversal ("Wen is Felix's manager" / "Felix is Wen's manager") or a substitution in
    #: place ("... in staging" / "... in production") from a rephrasing.
    sequence: tuple[str, ...] = ()

    @property
    def richness(self) -> int:
        """How much the text pins down: the member that keeps most is the survivor."""
        return len(self.numbers) + len(self.dates) + len(self.names)

    @cached_property
    def content(self) -> frozenset[str]:
        """:func:`content_words`, computed once: a memory is in up to ~20 candidate pairs,
        and the pair checks ask for it each time."""
        return frozenset(word[:-1] if len(word) > 3 and word.endswith("s") else word
                         for word in self.words
                         if word not in STOPWORDS and not word[0].isdigit())

    @cached_property
    def rest(self) -> frozenset[str]:
        """:func:`rest_words`, computed once (as ``content``)."""
        return self.content - self.names - self.numbers - {
            w for w in self.words if w in MONTHS or w in WEEKDAYS}


_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
#: Dates written with a month's name ("Aug 10, 2025", "10 August 2025", "June 28"): read
#: as one date (2025-08-10, 06-28) so that they equal their ISO spelling.
_NAMED_DATES = [
    (re.compile(rf"\b({_MONTH})\.?\s+{_ORDINAL},?\s+(\d{{4}})\b", re.IGNORECASE), (3, 1, 2)),
    (re.compile(rf"\b{_ORDINAL}\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.IGNORECASE), (3, 2, 1)),
    (re.compile(rf"\b({_MONTH})\.?\s+{_ORDINAL}\b(?!:)", re.IGNORECASE), (None, 1, 2)),
    (re.compile(rf"\b{_ORDINAL}\s+({_MONTH})\b", re.IGNORECASE), (None, 2, 1)),
]


def _named_dates(text: str, dates: set[str]) -> str:
    """Take the dates written with a month's name out of ``text`` into ``dates``."""
    for pattern, (year, month, day) in _NAMED_DATES:
        def found(match: re.Match, year=year, month=month, day=day) -> str:
            number = MONTHS[match.group(month).lower()]
            when = f"{number}-{int(match.group(day)):02d}"
            dates.add(f"{match.group(year)}-{when}" if year else when)
            return " " * len(match.group(0))
        text = pattern.sub(found, text)
    return text


def facets(text: str) -> Facets:
    """Read ``text`` once into its facets."""
    numbers: set[str] = set()
    dates: set[str] = set()
    original, text = text, _named_dates(text, dates)
    names: set[str] = set()
    proper: set[str] = set()
    plain: set[str] = set()
    cased = any(map(str.isupper, text))
    words: set[str] = set()
    sequence: list[str] = []
    negated = False
    previous_number: str | None = None
    for match in _TOKEN.finditer(text):
        token = _POSSESSIVE.sub("", match.group(0).strip(".-'\u2019"))
        if not token:
            continue
        if token == "1:1":  # a meeting, not a ratio
            token = "one-on-one"
        lower = token.lower()
        if lower in FILLER:  # what an agent wraps a fact in ("Note:", "as discussed")
            continue
        words.add(lower)
        sequence.append(lower)
        if cased and token == lower:
            plain.add(lower)
        if lower in NEGATIONS or lower.endswith("n't"):
            negated = True
        if previous_number is not None and lower in UNITS:  # 5 min: the number and its unit
            numbers.discard(previous_number)
            numbers.add(f"{previous_number} {UNITS[lower]}")
            previous_number = None
            continue
        previous_number = None
        if token[0].isdigit():
            before = set(numbers)
            _number_or_date(token, numbers, dates)
            added = numbers - before
            previous_number = next(iter(added)) if len(added) == 1 else None
        elif token[0] in "+-":  # an offset: UTC+3
            numbers.add(token)
        elif lower in NUMBER_WORDS:
            numbers.add(NUMBER_WORDS[lower])
            previous_number = NUMBER_WORDS[lower]
        elif lower in MONTHS and (lower != "may" or token[0].isupper()
                                  or _NEAR_NUMBER.search(text, max(0, match.start() - 4),
                                                         match.end() + 4)):
            dates.add("month:" + MONTHS[lower])
        elif lower in WEEKDAYS or (lower.endswith("s") and lower[:-1] in WEEKDAYS):
            dates.add("day:" + WEEKDAYS.get(lower, WEEKDAYS.get(lower[:-1], lower)))
        elif any(c.isdigit() for c in token):  # v2.3.1, PROJ-123, db-2, utc-8: a value
            numbers.add(lower)
        elif _IDENTIFIER.match(lower):  # api.acme.io, node.js, user_id: it names something
            names.add(lower)
        elif token[0].isupper() and lower not in NOT_NAMES and lower not in STOPWORDS:
            # A sentence's first word counts too ("Maria leads ..."): a capitalised common
            # word only matters if the other text swaps it for another (differences()).
            names.add(lower)
            if not _starts_sentence(text, match.start()) and not token.isupper():
                proper.add(lower)  # an acronym (EM, QA) is no one's name
    negated = negated or bool(_CJK_NEGATION.search(original))
    return Facets(frozenset(numbers), frozenset(dates), frozenset(names), negated,
                  frozenset(words), frozenset(proper), frozenset(plain), tuple(sequence))


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` opens a sentence (or a clause after a colon or dash),
    where a capital says nothing about being a name."""
    i = at - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in ".!?:;-\u2013\u2014(\"'"


def with_known_names(f: Facets, known: frozenset[str]) -> Facets:
    """``f`` with the words that are names elsewhere (``known``: proper nouns of the other
    texts) counted as names where written in lower case ("page selin" names Selin as
    "page Selin" does), so a swap of lower-cased names is a name that differs."""
    extra = (f.words & known) - f.names
    return replace(f, names=f.names | extra) if extra else f


def _number_or_date(token: str, numbers: set[str], dates: set[str]) -> None:
    if m := _ISO_DATE.match(token):
        dates.add(f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}")
    elif _SLASHED_DATE.match(token):
        dates.add(token)
    elif _CLOCK.match(token):
        hours, minutes = token.split(":")[:2]
        dates.add(f"time:{int(hours):02d}:{minutes}")
    elif _NUMBER.match(token):
        value = token.replace(",", "")
        # As text, never int(): a number of thousands of digits is text like any other.
        numbers.add(value.rstrip("0").rstrip(".") if "." in value else value.lstrip("0") or "0")
    else:  # 10.0.0.1, 1-2, 3/4: compared as written
        numbers.add(token)


def differences(a: Facets, b: Facets) -> list[str]:
    """The facets on which two texts disagree (empty: they may say the same thing).

    - numbers, dates: the two sets differ (one text stating a number or a date the other
      leaves out counts: "UTC" and "UTC+3" are two time zones);
    - names: each text has a name the other does not mention at all (a substitution:
      "Maria" for "Anna"; a name one text leaves out is no disagreement);
    - negation: one negates, the other does not;
    - contrast: one says "enabled" where the other says "disabled" (``OPPOSITES``).
    """
    found = []
    if a.numbers != b.numbers:
        found.append("number")
    if a.dates != b.dates:
        found.append("date")
    if (a.names - b.words) and (b.names - a.words):
        found.append("name")
    if a.negated != b.negated:
        found.append("negation")
    if _contrast(a.words, b.words):
        found.append("contrast")
    return found


def _contrast(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether a word of ``OPPOSITES`` is in one text only and its opposite in the other
    only ("enabled" / "disabled"; a text saying both says neither)."""
    only_b = None
    for word in (a & _OPPOSABLE) - b:
        only_b = b - a if only_b is None else only_b
        if not OPPOSITE_OF[word].isdisjoint(only_b):
            return True
    return False


def content_words(f: Facets) -> frozenset[str]:
    """The words that carry meaning: no stopword, no number, a plural's s dropped."""
    return f.content


def rest_words(f: Facets) -> frozenset[str]:
    """The content words that are no value (number, name, date): what a statement is
    about, to tell a contradiction (same statement, another value) from another fact."""
    return f.rest


#: Letters two forms of one word share at least (``managed`` / ``manager``).
STEM = 5


def _one_word(x: str, y: str) -> bool:
    """Two forms of one word: an abbreviation that is its prefix ("cert" / "certificate",
    "min" / "minute"), or the same stem of STEM letters or more with at most two letters
    of ending each ("managed" / "manager", "caused" / "causes")."""
    short, long = sorted((x, y), key=len)
    if len(short) >= 3 and long.startswith(short):
        return True
    common = _common_prefix(x, y)
    return common >= STEM and len(long) - common <= 2


def _common_prefix(x: str, y: str) -> int:
    n = 0
    for c, d in zip(x, y, strict=False):
        if c != d:
            break
        n += 1
    return n


def _unpaired(only_a: set[str], only_b: set[str]) -> tuple[set[str], set[str]]:
    """The words left once those that are another form of a word on the other side (or,
    for one word, the initials of all the other side's: "tz" / "time zone") are paired
    off: what a rephrasing changed in form is no substitution of a value."""
    only_a, only_b = set(only_a), set(only_b)
    for x in sorted(only_a):
        match = next((y for y in sorted(only_b) if _one_word(x, y)), None)
        if match is not None:
            only_a.discard(x)
            only_b.discard(match)
    for one, many in ((only_a, only_b), (only_b, only_a)):
        if len(one) == 1 and len(many) >= 2:
            word = next(iter(one))
            if any(word == "".join(w[0] for w in order) for order in _orders(many)):
                one.clear()
                many.clear()
    return only_a, only_b


def _orders(words: set[str]) -> list[tuple[str, ...]]:
    return list(itertools.permutations(sorted(words))) if len(words) <= 3 else []


def swapped_term(a: Facets, b: Facets) -> tuple[str, str] | None:
    """The words each text has that the other lacks, when that is all that differs (at
    most two a side: "staging" / "production", "web frontend" / "search service", "mateo"
    / "theo"): a substitution, which may be a synonym (the caller asks the model) or
    another value. None otherwise, or when one is an abbreviation of the other, and
    once another form of the same word is paired off (:func:`_unpaired`) when nothing
    is left on one side (then words were only added: no value was replaced)."""
    only_a, only_b = content_words(a) - content_words(b), content_words(b) - content_words(a)
    only_a, only_b = _unpaired(only_a, only_b)
    if 1 <= len(only_a) <= 2 and 1 <= len(only_b) <= 2:
        x, y = " ".join(sorted(only_a)), " ".join(sorted(only_b))
        if not (x.startswith(y) or y.startswith(x)):  # prod / production
            return x, y
    return None


#: Words that join two others whose order then says nothing ("Ana and Ben met").
_JOINING = frozenset({"and", "&", "or", "nor", "with", "plus"})


def reversal(a: Facets, b: Facets) -> bool:
    """Whether two texts say the same words but for two that changed places ("Wen is
    Felix's manager" / "Felix is Wen's manager", "email over Slack" / "Slack over
    email"): who does what to whom changed, so they say different things. Not when the
    two are joined by "and" or the like ("Ana and Ben met" / "Ben and Ana met")."""
    x, y = a.sequence, b.sequence
    if len(x) != len(y) or x == y or a.words != b.words:
        return False
    apart = [k for k in range(len(x)) if x[k] != y[k]]
    if len(apart) != 2:
        return False
    i, j = apart
    if x[i] != y[j] or x[j] != y[i] or x[i] in STOPWORDS or x[j] in STOPWORDS:
        return False
    return not (j - i <= 3 and _JOINING & set(x[i + 1:j]))


#: Words a substitution in place replaces at most on each side.
IN_PLACE = 3


def in_place(a: Facets, b: Facets) -> bool:
    """Whether the two texts are the same words in the same order but for one stretch of
    at most IN_PLACE words on each side ("the search service in staging" / "... in
    production"): a value replaced where it stood, not a rephrasing."""
    x, y = a.sequence, b.sequence
    shorter = min(len(x), len(y))
    start = 0
    while start < shorter and x[start] == y[start]:
        start += 1
    end = 0
    while end < shorter - start and x[-1 - end] == y[-1 - end]:
        end += 1
    return len(x) - start - end <= IN_PLACE and len(y) - start - end <= IN_PLACE


def unpaired(a: Facets, b: Facets) -> tuple[set[str], set[str]]:
    """The content words each text has that the other lacks, once another form of one
    word on the other side is paired off (:func:`_unpaired`)."""
    return _unpaired(content_words(a) - content_words(b), content_words(b) - content_words(a))
