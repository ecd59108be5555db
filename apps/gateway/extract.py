"""Candidate facts from one exchange: the extractor interface and its two providers.

``MEMORYWEB_GATEWAY_EXTRACTOR`` chooses:

- ``auto`` (the default): the model extractor when one is configured
  (``MEMORYWEB_GATEWAY_EXTRACTOR_URL``), else the gateway's own OpenAI-compatible upstream
  when the server has a key for it (``MEMORYWEB_GATEWAY_OPENAI_URL`` and ``…_KEY_FILE``:
  seed 003 extracts with the provider it proxies), else ``offline``. See :func:`choice`.
- ``offline``: :class:`HeuristicExtractor`, no network. It keeps the user's
  declarative sentences that say something durable — "remember that …", "note: …",
  "my/our X is Y", preferences ("I prefer …", "I always …"), "we use …", decisions ("we
  decided …", "let's go with …") — and skips questions, greetings, thanks and code. The
  assistant's answer is never a source offline: a model's claim is not the user's fact.
- ``openai``: :class:`ModelExtractor`, an OpenAI-compatible ``/chat/completions`` call
  (``MEMORYWEB_GATEWAY_EXTRACTOR_URL``, ``…_MODEL``, the key read from ``…_KEY_FILE`` at
  each call) asking for JSON ``{"facts": ["…"]}`` — the client pattern of
  apps/core/summarizer_openai.py: temperature 0, a timeout, the key only in the header and
  scrubbed from any quoted error, one attempt per call (the learner's queue retries).

Both receive text that was redacted when the exchange was queued and redact it again
before it leaves (``memoryweb_capture.redact``: the capture hooks' patterns); what comes
back is redacted too before anyone stores it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from memoryweb_capture.redact import redact

from .namespace_setting import override

#: A fact is one sentence of this many characters at most (longer: not a fact).
MAX_FACT_CHARS = 300
MIN_FACT_WORDS = 3
#: Facts taken from one exchange at most.
MAX_FACTS = 8
#: Characters of the exchange sent to a model extractor (the latest turns matter).
MAX_MODEL_INPUT_CHARS = 12_000


@dataclass(frozen=True)
class Exchange:
    """The redacted text of one exchange: the latest user turn(s) and the answer."""

    user_text: str
    assistant_text: str


class ExtractionError(Exception):
    """Extraction failed this time (the upstream is down, refused, or answered nonsense);
    the exchange stays queued and is tried again later. The message quotes no text."""


class Extractor(Protocol):
    name: str

    def extract(self, exchange: Exchange) -> list[str]:
        """Candidate facts, each one short self-contained sentence."""
        ...


# --- offline ------------------------------------------------------------------------------

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_QUESTION_START = re.compile(
    r"^(?:what|where|when|why|who|whom|whose|which|how|can|could|would|should|shall|do|does|"
    r"did|is|are|was|were|will|may|might|have|has|am)\b", re.IGNORECASE)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|thx|ok|okay|cool|great|good (?:morning|afternoon|"
    r"evening|night)|bye|goodbye|cheers|please|sure|yes|no|nope|yep)\b[\s,.!]*", re.IGNORECASE)
_MARKER = re.compile(
    r"^(?:please\s+)?(?:remember|note|keep in mind|don't forget|do not forget|for the record|"
    r"fyi|for your information)(?:\s+that)?\s*[:,\-]?\s+", re.IGNORECASE)
#: Sentences that state something durable (checked after a marker is taken off).
_DECLARATIVE = re.compile(
    r"^(?:"
    r"(?:my|our)\s+[\w' \-]{1,40}?\s+(?:is|are|was|lives|runs|uses|has|have)\b"
    r"|(?:i|we)\s+(?:always|never|usually|prefer|like|love|hate|dislike|use|run|deploy|"
    r"work|live|decided|chose|agreed|switched|moved|want|need|avoid|build|ship|keep|"
    r"am|'m|are|'re)\b"
    r"|(?:i'm|we're|i am|we are)\s+(?:using|working|running|based|moving|switching|a|an|the)\b"
    r"|(?:let's|let us)\s+(?:use|go with|keep|stick|switch|call)\b"
    r"|(?:the\s+)?(?:decision|plan|rule|convention|policy)\s*(?:is|was|:)"
    r"|(?:from now on|going forward|in this project|in this repo)\b"
    r")", re.IGNORECASE)
#: Something that is code or a command, not prose.
_CODE_LIKE = re.compile(r"[{};]\s*$|^\s*(?:def|class|import|from|return|const|let|var|function|"
                        r"SELECT|INSERT|UPDATE|DELETE|\$|>>>|#include)\b|=>|\(\)|::")


def _sentences(text: str) -> list[str]:
    text = _INLINE_CODE.sub(" ", _FENCE.sub("\n", text))
    pieces = []
    for line in text.splitlines():
        if line.startswith(("    ", "\t")) or _CODE_LIKE.search(line):
            continue  # an indented block or a line of code
        pieces.extend(_SENTENCE_END.split(line))
    return [" ".join(piece.split()) for piece in pieces if piece and piece.strip()]


def _fact_of(sentence: str) -> str | None:
    """The fact a user's sentence states, or None (a question, a greeting, small talk)."""
    sentence = sentence.strip(" -*•>\t")
    if not sentence or sentence.endswith("?"):
        return None
    rest = _GREETING.sub("", sentence) if _GREETING.match(sentence) else sentence
    marked = _MARKER.match(rest)
    if marked:
        rest = rest[marked.end():]
    elif not _DECLARATIVE.match(rest) or _QUESTION_START.match(rest):
        return None
    rest = rest.strip(" ,;:-")
    if len(rest.split()) < MIN_FACT_WORDS or len(rest) > MAX_FACT_CHARS:
        return None
    rest = rest[0].upper() + rest[1:]
    return rest if rest.endswith((".", "!")) else rest + "."


class HeuristicExtractor:
    """The offline default (see the module docstring)."""

    name = "offline"

    def extract(self, exchange: Exchange) -> list[str]:
        found: list[str] = []
        for sentence in _sentences(exchange.user_text):
            fact = _fact_of(sentence)
            if fact and fact not in found:
                found.append(redact(fact))
            if len(found) >= MAX_FACTS:
                break
        return found


# --- an OpenAI-compatible model -----------------------------------------------------------

SYSTEM_PROMPT = """\
You extract durable facts for an AI agent's long-term memory from one exchange between a
user and an assistant. Answer with one JSON object and nothing else: {"facts": ["...", ...]}
- Each fact is one short, self-contained sentence (at most 300 characters) that will still
  be true and useful later: a preference, a decision, a convention, a name, where
  something is, how the user's project works.
- Take facts the user states or confirms. Leave out questions, greetings, small talk,
  code, the assistant's own suggestions the user did not confirm, and anything secret
  (keys, passwords, tokens).
- Keep names, numbers and paths exactly. At most 8 facts; none is fine: {"facts": []}."""


class ModelExtractor:
    """``MEMORYWEB_GATEWAY_EXTRACTOR=openai`` (see the module docstring)."""

    name = "openai"

    def __init__(self, *, url: str, model: str, key: str, timeout_seconds: float) -> None:
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model = model
        self._key = key
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:  # no key
        return f"<ModelExtractor {self.model!r} at {self._where()}>"

    def extract(self, exchange: Exchange) -> list[str]:
        user = redact(exchange.user_text)[-MAX_MODEL_INPUT_CHARS // 2:]
        assistant = redact(exchange.assistant_text)[-MAX_MODEL_INPUT_CHARS // 2:]
        body = {"model": self.model, "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": f"USER:\n{user}\n\nASSISTANT:\n"
                                                         f"{assistant}"}]}
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout_seconds),
                              follow_redirects=False) as client:
                response = client.post(self.endpoint, json=body, headers=headers)
        except httpx.TimeoutException:
            raise ExtractionError(f"the extractor at {self._where()} gave no answer within "
                                  f"{self.timeout_seconds:g} s") from None
        except httpx.TransportError as exc:
            raise ExtractionError(f"the extractor at {self._where()} could not be reached "
                                  f"({type(exc).__name__})") from None
        if response.status_code != 200:
            raise ExtractionError(f"the extractor at {self._where()} answered "
                                  f"{response.status_code}: {self._scrub(response.text[:200])}")
        return self._facts(response)

    def _facts(self, response: httpx.Response) -> list[str]:
        try:
            content = response.json()["choices"][0]["message"]["content"]
            data = json.loads(re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip()))
            raw = data["facts"]
        except (ValueError, LookupError, TypeError):
            raise ExtractionError(f"the extractor at {self._where()} answered 200 without a "
                                  "facts list (not kept: it may quote the exchange)") from None
        if not isinstance(raw, list):
            raise ExtractionError(f"the extractor at {self._where()}'s facts are no list")
        facts: list[str] = []
        for item in raw:
            if not isinstance(item, str):
                continue
            text = " ".join(item.split())
            if len(text.split()) >= MIN_FACT_WORDS and len(text) <= MAX_FACT_CHARS \
                    and text not in facts:
                facts.append(redact(text))
        return facts[:MAX_FACTS]

    def _where(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "") + parts.path

    def _scrub(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "[key]")
        return " ".join(redact(text).split())


def choice(namespace: object = None) -> tuple[str, str, str]:
    """(extractor, model URL, key file) as configured now for ``namespace``'s exchanges:
    ``("offline", "", "")`` or ``("openai", url, key_file)``, ``auto`` resolved (see the
    module docstring). Under ``auto`` a namespace with its own OpenAI upstream
    (``gateway.upstreams.openai``) extracts there with its own key file, or offline when it
    has none: its exchanges never go to the server's upstream instead."""
    name = settings.MEMORYWEB_GATEWAY_EXTRACTOR
    if name == "offline":
        return "offline", "", ""
    if name == "openai" or settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL:
        return ("openai", settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL,
                settings.MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE)
    own = override(namespace, "openai") if namespace is not None else {}
    if own:
        if own.get("key_file") and settings.MEMORYWEB_GATEWAY_KEY_DIR:
            return ("openai", own.get("url") or settings.MEMORYWEB_GATEWAY_OPENAI_URL,
                    str(Path(settings.MEMORYWEB_GATEWAY_KEY_DIR) / own["key_file"]))
        return "offline", "", ""
    if settings.MEMORYWEB_GATEWAY_OPENAI_URL and settings.MEMORYWEB_GATEWAY_OPENAI_KEY_FILE:
        return ("openai", settings.MEMORYWEB_GATEWAY_OPENAI_URL,
                settings.MEMORYWEB_GATEWAY_OPENAI_KEY_FILE)
    return "offline", "", ""


def extractor(namespace: object = None) -> Extractor:
    """The configured extractor, built now (settings read at call time; the key file read
    at each build, so a rotated key needs no restart). An unreadable key file is an
    ExtractionError: the exchange waits instead of going out without a key."""
    name, url, key_file = choice(namespace)
    if name != "openai":
        return HeuristicExtractor()
    try:
        key = Path(key_file).read_text().strip() if key_file else ""
    except OSError:
        raise ExtractionError("the extractor's key file cannot be read") from None
    return ModelExtractor(url=url, model=settings.MEMORYWEB_GATEWAY_EXTRACTOR_MODEL, key=key,
                          timeout_seconds=settings.MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT)
