"""MemoryWeb's own settings, typed and read when asked; the data directory's start-up step.

``memoryweb/settings.py`` turns the environment into settings and does nothing else (no
directory, no file written at import). This module is how code reads the structured
ones: ``limits().max_k``, ``live().burst``. Each call reads ``django.conf.settings``
afresh, so ``override_settings`` (and pytest-django's ``settings`` fixture) reach every
caller; a value copied into a module constant at import would not. Bad values are
refused by the system checks (apps/core/checks.py), which use the same types and the
environment variable names declared here.

Core is the lowest layer: nothing here imports another app.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

#: Recall modes (``MEMORYWEB_RECALL_MODE``, a namespace's or a request's ``mode``).
RECALL_MODES = ("vector", "lexical", "hybrid")
#: Hybrid fusion methods (``MEMORYWEB_FUSION``).
FUSION_METHODS = ("weighted", "rrf")
#: How context enters a memory's vector (``MEMORYWEB_CONTEXT_EMBEDDING``).
CONTEXT_EMBEDDINGS = ("mix", "text")
#: Keyword recall engines (``MEMORYWEB_KEYWORD_ENGINE``).
KEYWORD_ENGINES = ("auto", "sql", "memory")
#: The most a fusion weight may be: the bound on a namespace's ``recall_defaults.weights``.
MAX_FUSION_WEIGHT = 100.0


def _env(name: str | None) -> Any:
    """A field set from environment variable ``name`` (None: fixed in settings.py)."""
    return field(metadata={"env": name})


@dataclass(frozen=True, slots=True)
class Limits:
    """``MEMORYWEB_LIMITS``: sizes the API accepts (docs/api.md)."""

    max_body_bytes: int = _env("MEMORYWEB_MAX_BODY_BYTES")
    max_content_bytes: int = _env("MEMORYWEB_MAX_CONTENT_BYTES")
    max_batch: int = _env("MEMORYWEB_MAX_BATCH")
    max_k: int = _env("MEMORYWEB_MAX_K")
    max_filter_delete: int = _env("MEMORYWEB_MAX_FILTER_DELETE")
    max_query_bytes: int = _env("MEMORYWEB_MAX_QUERY_BYTES")
    max_tags: int = _env(None)
    max_tag_length: int = _env(None)
    max_metadata_bytes: int = _env("MEMORYWEB_MAX_METADATA_BYTES")
    max_id_length: int = _env(None)
    max_page_size: int = _env(None)
    max_metadata_filters: int = _env(None)
    max_json_depth: int = _env("MEMORYWEB_MAX_JSON_DEPTH")


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """``MEMORYWEB_LIVE``: what one WebSocket connection may do (docs/live.md)."""

    auth_timeout_seconds: float = _env("MEMORYWEB_LIVE_AUTH_TIMEOUT")
    max_subscriptions: int = _env("MEMORYWEB_LIVE_MAX_SUBSCRIPTIONS")
    messages_per_second: float = _env("MEMORYWEB_LIVE_RATE")
    burst: int = _env("MEMORYWEB_LIVE_BURST")
    send_queue: int = _env("MEMORYWEB_LIVE_SEND_QUEUE")
    recheck_seconds: float = _env("MEMORYWEB_LIVE_RECHECK_SECONDS")
    max_connections_per_principal: int = _env("MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY")
    default_min_score: float = _env(None)


@dataclass(frozen=True, slots=True)
class FusionWeights:
    """``MEMORYWEB_FUSION_WEIGHTS``: the hybrid fusion's inputs (docs/recall.md)."""

    vector: float = _env("MEMORYWEB_FUSION_WEIGHT_VECTOR")
    lexical: float = _env("MEMORYWEB_FUSION_WEIGHT_LEXICAL")
    session: float = _env("MEMORYWEB_FUSION_WEIGHT_SESSION")
    recency: float = _env("MEMORYWEB_FUSION_WEIGHT_RECENCY")
    importance: float = _env("MEMORYWEB_FUSION_WEIGHT_IMPORTANCE")
    strength: float = _env("MEMORYWEB_FUSION_WEIGHT_STRENGTH")
    rerank: float = _env("MEMORYWEB_FUSION_WEIGHT_RERANK")


@dataclass(frozen=True, slots=True)
class RollupChars:
    """``MEMORYWEB_ROLLUP_MAX_CHARS``: the longest summary of each timeline level."""

    segment: int = _env("MEMORYWEB_ROLLUP_SEGMENT_CHARS")
    day: int = _env("MEMORYWEB_ROLLUP_DAY_CHARS")
    week: int = _env("MEMORYWEB_ROLLUP_WEEK_CHARS")
    month: int = _env("MEMORYWEB_ROLLUP_MONTH_CHARS")
    year: int = _env("MEMORYWEB_ROLLUP_YEAR_CHARS")


#: Each structured setting, the type its dict is read as.
STRUCTURED: dict[str, type] = {
    "MEMORYWEB_LIMITS": Limits,
    "MEMORYWEB_LIVE": LiveLimits,
    "MEMORYWEB_FUSION_WEIGHTS": FusionWeights,
    "MEMORYWEB_ROLLUP_MAX_CHARS": RollupChars,
}


@dataclass(frozen=True, slots=True)
class RollupSettings:
    """The timeline's ``MEMORYWEB_ROLLUP*`` settings, typed (docs/timeline.md)."""

    scheduled: bool
    interval_minutes: int
    segment_gap_minutes: int
    max_chars: RollupChars


def rollups() -> RollupSettings:
    """The timeline's settings now (the checks refuse bad ones at start)."""
    return RollupSettings(
        scheduled=settings.MEMORYWEB_ROLLUPS_SCHEDULED,
        interval_minutes=settings.MEMORYWEB_ROLLUP_INTERVAL_MINUTES,
        segment_gap_minutes=settings.MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES,
        max_chars=RollupChars(**settings.MEMORYWEB_ROLLUP_MAX_CHARS),
    )


def limits() -> Limits:
    """``settings.MEMORYWEB_LIMITS`` now, typed."""
    return Limits(**settings.MEMORYWEB_LIMITS)


def live() -> LiveLimits:
    """``settings.MEMORYWEB_LIVE`` now, typed."""
    return LiveLimits(**settings.MEMORYWEB_LIVE)


def fusion_weights() -> FusionWeights:
    """``settings.MEMORYWEB_FUSION_WEIGHTS`` now, typed."""
    return FusionWeights(**settings.MEMORYWEB_FUSION_WEIGHTS)


def env_names(setting: str) -> dict[str, str | None]:
    """The environment variable behind each key of a structured setting (None: fixed)."""
    return {f.name: f.metadata["env"] for f in fields(STRUCTURED[setting])}


class SettingView(MutableMapping):
    """A dict setting read at each access: ``view["max_k"]`` is the current
    ``settings.MEMORYWEB_LIMITS["max_k"]``, under ``override_settings`` too.

    For modules that still index a module-level name (``schemas.LIMITS``,
    ``consumers.LIMITS``) and for tests that ``monkeypatch.setitem`` it: writes go to the
    current settings dict, as they did when the name was the dict itself. New code calls
    ``limits()`` / ``live()`` instead.
    """

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def _current(self) -> dict[str, Any]:
        return getattr(settings, self.setting)

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._current()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"<{self.setting} {self._current()!r}>"


# --- Rates ------------------------------------------------------------------------------

_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smhd])[a-z]*\s*")


def parse_rate(text: str | None) -> tuple[int, int] | None:
    """``"20/min"`` -> (20, 60); empty -> None (unlimited). DRF's syntax: the period's
    first letter (s, m, h, d) counts. ``MEMORYWEB_RATE_LIMIT``'s parser (the budget in
    apps/tenancy/budget.py draws with it); ``ValueError`` for anything else."""
    if not text or not text.strip():
        return None
    match = _RATE.fullmatch(text.lower())
    if not match:
        raise ValueError(f"not a rate: {text!r} (expected e.g. '6000/min', '20/s')")
    return int(match[1]), _RATE_UNITS[match[2]]


def rate_limit() -> tuple[int, int] | None:
    """``MEMORYWEB_RATE_LIMIT`` now: (requests, seconds), or None when unlimited."""
    return parse_rate(settings.MEMORYWEB_RATE_LIMIT)


def lean_api() -> bool:
    """``MEMORYWEB_LEAN_API`` now: whether API calls with a key take the lean middleware
    chain (apps/core/asgi.py)."""
    return bool(settings.MEMORYWEB_LEAN_API)


def key_cache_seconds() -> float:
    """``MEMORYWEB_KEY_CACHE_SECONDS`` now: how long a process may remember an
    authenticated API key (0: not at all; apps/tenancy/key_cache.py)."""
    return float(settings.MEMORYWEB_KEY_CACHE_SECONDS)


# --- The summarizer (apps/core/summarizer.py, docs/summarizer.md) -------------------------

#: Summarizers (``MEMORYWEB_SUMMARIZER``): offline extractive, or an OpenAI-compatible API.
SUMMARIZERS = ("extractive", "openai")


@dataclass(frozen=True, slots=True)
class SummarizerSettings:
    """The ``MEMORYWEB_SUMMARIZER*`` settings, typed. The key is left out of the repr, so
    logging or printing the settings shows no secret."""

    name: str
    url: str
    model: str
    key: str = field(repr=False)
    timeout_seconds: float
    retries: int
    backoff_seconds: float
    max_input_chars: int


def summarizer() -> SummarizerSettings:
    """The ``MEMORYWEB_SUMMARIZER*`` settings now (the provider is built from them at each
    ``get_summarizer()``; the checks refuse bad ones at start)."""
    return SummarizerSettings(
        name=settings.MEMORYWEB_SUMMARIZER,
        url=settings.MEMORYWEB_SUMMARIZER_URL,
        model=settings.MEMORYWEB_SUMMARIZER_MODEL,
        key=settings.MEMORYWEB_SUMMARIZER_KEY,
        timeout_seconds=settings.MEMORYWEB_SUMMARIZER_TIMEOUT,
        retries=settings.MEMORYWEB_SUMMARIZER_RETRIES,
        backoff_seconds=settings.MEMORYWEB_SUMMARIZER_BACKOFF,
        max_input_chars=settings.MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS,
    )


# --- The data directory: created at start, never at import --------------------------------


def directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as a writable directory, or None (it is one, or it can be
    created: its nearest existing parent is a writable directory)."""
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def ensure_secret_key(path: Path) -> str:
    """The key in ``path``; generated there first (mode 0600) if the file is missing.

    Written to a private temporary file and linked into place, so two processes starting
    on a fresh data directory at once (``migrate`` and the server) agree on one key and
    neither reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process won the race: its key is the key
            except OSError:  # a file system without hard links
                if not path.exists():
                    os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text().strip()


def prepare_data_dir() -> None:
    """Create what the settings point at before Django starts: the data directory (the
    SQLite database, the job queue's SQLite file and Chroma live there), the static root
    (WhiteNoise serves it), and, in local and test mode without ``SECRET_KEY``, the secret
    key generated once into the data directory and reused by every later start.

    Called by the entry points (manage.py, memoryweb/asgi.py) after the settings are read
    and before ``django.setup()``: the job queue opens its SQLite file while the apps load,
    and ``SECRET_KEY`` must be set before anything signs. A script that calls
    ``django.setup()`` itself calls this first.
    """
    data_dir = Path(settings.DATA_DIR)
    problem = directory_problem(data_dir)
    if problem:  # before Django starts, so no system check can say it
        raise ImproperlyConfigured(f"MEMORYWEB_DATA_DIR={str(data_dir)!r} {problem}.")
    data_dir.mkdir(parents=True, exist_ok=True)
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    key_file = settings.MEMORYWEB_GENERATED_SECRET_KEY
    if key_file is not None:
        settings.SECRET_KEY = ensure_secret_key(Path(key_file))
