"""``MEMORYWEB_SUMMARIZER=openai``: summaries from an OpenAI-compatible chat-completions API
(OpenAI, Azure's compatible endpoint, vLLM, Ollama, llama.cpp's server…; docs/summarizer.md).

One request per summary: ``POST {MEMORYWEB_SUMMARIZER_URL}/chat/completions`` with the
sources numbered in the prompt, asking for JSON ``{"parts": [{"text", "sources": [n…],
"quotes": ["exact quote"…]}]}`` (``response_format: json_object``, temperature 0). The answer
is checked, never trusted: unknown source numbers are dropped, a quote that is not in its
source is replaced by the source's best-matching sentence, parts are bounded to
``max_chars``; an answer with no usable part is a ``SummarizerError(retryable=False)``.

Privacy: every text that leaves the machine (source texts, labels, the focus) first passes
through ``memoryweb_capture.redact.redact`` (API keys, tokens, passwords, private keys),
and only that is sent. The API key travels in the ``Authorization`` header only; it is
never logged, never in an exception's message (upstream text quoted in an error is
scrubbed of it) and not in the settings' repr.

Failures: a 429 (its ``Retry-After`` honoured), a 5xx, a timeout or a lost connection is
retried ``MEMORYWEB_SUMMARIZER_RETRIES`` times with exponential backoff and jitter, then
raised as ``SummarizerError(retryable=True)`` for the job to resume later; any other 4xx
(a refused key, an unknown model) is ``retryable=False`` at once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from apps.core import conf
from apps.core.summarizer import (
    MAX_EXCERPT_CHARS,
    SourceText,
    SummarizerError,
    Summary,
    SummaryPart,
    bounded_parts,
    check_max_chars,
)
from apps.core.summarizer_extractive import ExtractiveSummarizer, best_sentence

log = logging.getLogger(__name__)

#: A single wait never exceeds this: a longer ``Retry-After`` ends this run (retryable,
#: with ``retry_after`` set) instead of holding a job's lease while it sleeps.
MAX_WAIT_SECONDS = 120.0
#: Upstream text quoted in an error (after the key is scrubbed from it).
ERROR_SNIPPET_CHARS = 300
#: Worth another try: rate limited, or the upstream failed (any other 4xx will not change).
_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))

SYSTEM_PROMPT = """\
You summarise a period of an AI agent's work for its long-term memory.
The user message lists numbered sources, in time order, as "[n] time label: text".
Answer with one JSON object and nothing else:
{"parts": [{"text": "...", "sources": [n, ...], "quotes": ["...", ...]}]}
- Each part is one short, self-contained sentence stating a fact, decision, result or open
  question from the sources. Keep names, numbers and dates exactly.
- "sources" lists the numbers of the sources the part rests on (at least one).
- "quotes" holds, for each of those sources in the same order, an exact verbatim quote
  (at most 300 characters) from that source that supports the part.
- Use only what the sources say. Leave out small talk and repetition.
- All parts' texts together stay within {max_chars} characters."""


def _redactor() -> Callable[[str], str]:
    """The capture package's redaction (stdlib only, shared with the hooks): imported when
    a provider runs, so the offline default never needs it."""
    try:
        from memoryweb_capture.redact import redact
    except ImportError as exc:  # fail closed: nothing leaves unredacted
        raise SummarizerError(f"The secret redaction (memoryweb_capture.redact) does not "
                              f"import ({exc}); nothing was sent.", retryable=False) from None
    return redact


class OpenAISummarizer:
    """A summarizer calling an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, *, url: str, model: str, key: str, timeout_seconds: float = 60.0,
                 retries: int = 3, backoff_seconds: float = 1.0,
                 max_input_chars: int = 100_000,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"
        self._key = key
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_input_chars = max_input_chars
        self._sleep = sleep
        self._random = random.Random()

    @classmethod
    def from_settings(cls, config: conf.SummarizerSettings) -> OpenAISummarizer:
        return cls(url=config.url, model=config.model, key=config.key,
                   timeout_seconds=config.timeout_seconds, retries=config.retries,
                   backoff_seconds=config.backoff_seconds,
                   max_input_chars=config.max_input_chars)

    def __repr__(self) -> str:  # no key
        return f"<OpenAISummarizer {self.model!r} at {self._where()}>"

    # --- The summary -------------------------------------------------------------------

    def summarize(self, sources: Sequence[SourceText], *, max_chars: int,
                  focus: str = "") -> Summary:
        check_max_chars(max_chars)
        sources = [source for source in sources if (source.text or "").strip()]
        if not sources:
            return Summary(parts=(), summarizer=self.name)
        sent = self._bounded_input(sources)
        redact = _redactor()
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.replace("{max_chars}", str(max_chars))},
                {"role": "user", "content": self._prompt(sent, redact(focus) if focus else "",
                                                         redact)},
            ],
        }
        content = self._post(body)
        parts = self._parts(content, sent, {source.id: source.text for source in sources})
        bounded = bounded_parts(parts, max_chars)
        return Summary(parts=bounded, summarizer=self.name)

    def _bounded_input(self, sources: list[SourceText]) -> list[SourceText]:
        """The sources as sent: all of them while their texts fit ``max_input_chars``;
        above it, the sentences the extractive summarizer picks within that bound, each
        source reduced to its picked sentences (sources with none left out). A quote is
        still checked against the whole source."""
        if sum(len(source.text) for source in sources) <= self.max_input_chars:
            return sources
        picked = ExtractiveSummarizer().summarize(sources, max_chars=self.max_input_chars)
        by_id: dict[str, list[str]] = {}
        for part in picked.parts:
            by_id.setdefault(part.source_ids[0], []).append(part.excerpts[0])
        return [SourceText(source.id, " … ".join(by_id[source.id]), source.occurred_at,
                           source.label)
                for source in sources if source.id in by_id]

    @staticmethod
    def _prompt(sources: list[SourceText], focus: str, redact: Callable[[str], str]) -> str:
        lines = [f"Focus on: {focus}", ""] if focus else []
        for number, source in enumerate(sources, start=1):
            when = _iso(source.occurred_at)
            label = redact(source.label) if source.label else ""
            head = " ".join(bit for bit in (f"[{number}]", when, label) if bit)
            text = " ".join(redact(source.text).split())  # one line per source
            lines.append(f"{head}: {text}")
        return "\n".join(lines)

    # --- The request and its retries ---------------------------------------------------

    def _post(self, body: dict[str, Any]) -> str:
        """The answer's message content, after the retries; ``SummarizerError`` otherwise."""
        headers = {"Authorization": f"Bearer {self._key}"}
        attempts = self.retries + 1
        problem = ""
        with httpx.Client(timeout=httpx.Timeout(self.timeout_seconds),
                          follow_redirects=False) as client:  # HTTPS_PROXY/NO_PROXY apply
            for attempt in range(attempts):
                retry_after = None
                try:
                    response = client.post(self.endpoint, json=body, headers=headers)
                except httpx.TimeoutException:
                    problem = f"no answer within {self.timeout_seconds:g} s"
                except httpx.TransportError as exc:
                    problem = f"connection failed ({type(exc).__name__})"
                else:
                    if response.status_code == 200:
                        return self._content(response)
                    problem = (f"answered {response.status_code}: "
                               f"{self._scrub(response.text[:ERROR_SNIPPET_CHARS])}")
                    if response.status_code not in _RETRYABLE_STATUS:
                        raise SummarizerError(f"The summarizer at {self._where()} {problem}",
                                              retryable=False)
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                if attempt == attempts - 1:
                    break
                wait = retry_after if retry_after is not None else self._backoff(attempt)
                if wait > MAX_WAIT_SECONDS:
                    raise SummarizerError(f"The summarizer at {self._where()} {problem}; it asks "
                                          f"to wait {wait:g} s", retryable=True, retry_after=wait)
                log.warning("summarizer at %s %s; retry %d of %d in %.2f s", self._where(),
                            problem, attempt + 1, self.retries, wait)
                self._sleep(wait)
        raise SummarizerError(f"The summarizer at {self._where()} {problem} (after "
                              f"{attempts} attempt{'s' if attempts > 1 else ''})",
                              retryable=True, retry_after=retry_after)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of ``backoff * 2^n``."""
        ceiling = min(MAX_WAIT_SECONDS, self.backoff_seconds * 2 ** attempt)
        return self._random.uniform(ceiling / 2, ceiling)

    def _content(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            content = None
        if not isinstance(content, str):
            raise SummarizerError(f"The summarizer at {self._where()} answered 200 without a "
                                  f"chat completion ({len(response.text)} characters, not "
                                  "kept: they may quote memories)",
                                  retryable=False)
        return content

    def _where(self) -> str:
        """The endpoint's scheme, host and path, never user information."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def _scrub(self, text: str) -> str:
        """Upstream text with the key taken out (some APIs echo a refused key)."""
        if self._key:
            text = text.replace(self._key, "[key]")
            if len(self._key) > 12:  # "sk-abc…xyz" style echoes of its ends
                text = text.replace(self._key[:8], "[key]").replace(self._key[-6:], "[key]")
        return " ".join(text.split())

    # --- The answer -------------------------------------------------------------------

    def _parts(self, content: str, sent: list[SourceText],
               originals: dict[str, str]) -> list[SummaryPart]:
        """The usable parts of an answer: each part's known sources (by the number they were
        sent under), each with a quote found in the original source text (else that source's
        sentence that best matches the quote or the part)."""
        data = _json_object(content)
        raw_parts = data.get("parts") if isinstance(data, dict) else None
        if not isinstance(raw_parts, list):
            raise SummarizerError(f"The summarizer at {self._where()} answered no \"parts\" "
                                  f"list ({len(content)} characters, not kept: they may quote "
                                  "memories)",
                                  retryable=False)
        parts = []
        for raw in raw_parts:
            if not isinstance(raw, dict):
                continue
            text = raw.get("text")
            if not isinstance(text, str) or not " ".join(text.split()):
                continue
            text = " ".join(text.split())
            numbers = raw.get("sources")
            quotes = raw.get("quotes")
            numbers = numbers if isinstance(numbers, list) else [numbers]
            quotes = quotes if isinstance(quotes, list) else []
            ids, excerpts = [], []
            for position, number in enumerate(numbers):
                index = _source_number(number, len(sent))
                if index is None or sent[index].id in ids:
                    continue
                source_id = sent[index].id
                quote = quotes[position] if position < len(quotes) else None
                ids.append(source_id)
                excerpts.append(_excerpt(originals[source_id], quote, text))
            if ids:
                parts.append(SummaryPart(text, tuple(ids), tuple(excerpts)))
        if not parts:
            raise SummarizerError(f"The summarizer at {self._where()} answered no usable part "
                                  "(each needs a text and a known source number; the answer's "
                                  f"{len(content)} characters are not kept: they may quote "
                                  "memories)",
                                  retryable=False)
        return parts


def _json_object(content: str) -> Any:
    """The answer's JSON (a Markdown code fence around it tolerated); None when it is none."""
    text = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError:
        return None


def _source_number(number: Any, count: int) -> int | None:
    """The 0-based index of source ``number`` (1-based, as sent; "3" accepted), or None."""
    if isinstance(number, bool):
        return None
    text = number.strip().lstrip("[").rstrip("]") if isinstance(number, str) else ""
    # "²" is a digit, not a number; a longer string of digits than any source number
    # would pass int()'s digit limit
    if text.isascii() and text.isdigit() and len(text) <= len(str(count)):
        number = int(text)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, int) and 1 <= number <= count:
        return number - 1
    return None


def _excerpt(source_text: str, quote: Any, part_text: str) -> str:
    """A substring of ``source_text`` of at most ``MAX_EXCERPT_CHARS``: the quote as found
    (exactly, or ignoring case and runs of spaces), else the best-matching sentence."""
    if isinstance(quote, str) and quote.strip():
        found = _find(source_text, quote.strip().strip("\"'“”"))
        if found:
            return found[:MAX_EXCERPT_CHARS]
    hint = quote if isinstance(quote, str) and quote.strip() else part_text
    return best_sentence(source_text, hint)[:MAX_EXCERPT_CHARS]


def _find(text: str, quote: str) -> str | None:
    if not quote:
        return None
    if quote in text:
        return quote
    pattern = r"\s+".join(re.escape(word) for word in quote.split())
    match = re.search(pattern, text, re.IGNORECASE) if pattern else None
    return match.group(0) if match else None


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _iso(when: datetime | None) -> str:
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
