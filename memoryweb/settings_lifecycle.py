"""MemoryWeb's memory-lifecycle settings: consolidation, the summarizer, the memory gateway
and the timeline's rollups (the second wave's capabilities), read from the environment
like the rest of memoryweb/settings.py, which imports every name here.

Kept apart so neither file grows past what one reads at once; nothing here depends on the
data directory or the environment choice. Every variable is in the README's configuration
table and checked by apps/core/checks.py.
"""

from __future__ import annotations

import environ as _environ

# The same reading as settings.py: a variable may come from a file (NAME_FILE).
_env = _environ.FileAwareEnv()
_env.smart_cast = True

# --- Consolidation (apps/lifecycle, docs/lifecycle.md) --------------------------------
# Cosine similarity of two memories' contents at which they say the same thing (a request
# may give its own ``threshold``); chosen on bench/consolidation.py's tuning part.
MEMORYWEB_CONSOLIDATE_THRESHOLD = _env.float("MEMORYWEB_CONSOLIDATE_THRESHOLD", default=0.80)
# The most memories one REST/MCP/drop-in consolidation may consider (a request holds a
# worker meanwhile); manage.py consolidate has no such cap.
MEMORYWEB_CONSOLIDATE_MAX = _env.int("MEMORYWEB_CONSOLIDATE_MAX", default=20000)
# Above this many memories, a REST consolidation runs as a job (202 and the run to poll,
# GET /api/v1/consolidations/{id}); at or below, it is answered within the request.
MEMORYWEB_CONSOLIDATE_INLINE_MAX = _env.int("MEMORYWEB_CONSOLIDATE_INLINE_MAX", default=2000)
# Namespace merge (docs/lifecycle.md): memories moved per transaction, and the most a
# REST request moves itself before the merge runs as a job (202).
MEMORYWEB_NAMESPACE_MERGE_BATCH = _env.int("MEMORYWEB_NAMESPACE_MERGE_BATCH", default=500)
MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX = _env.int("MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX", default=2000)

# --- Summarizer (apps/core/summarizer.py, docs/summarizer.md) -----------------
# What rollups and digests summarise with: "extractive" (offline, deterministic: picks
# the input's own sentences) or "openai" (an OpenAI-compatible chat-completions API at
# URL, e.g. https://api.openai.com/v1; URL, MODEL and KEY are then required, checked at
# start). The key may come from a file (MEMORYWEB_SUMMARIZER_KEY_FILE).
MEMORYWEB_SUMMARIZER = _env.str("MEMORYWEB_SUMMARIZER", default="extractive").strip()
MEMORYWEB_SUMMARIZER_URL = _env.str("MEMORYWEB_SUMMARIZER_URL", default="").strip()
MEMORYWEB_SUMMARIZER_MODEL = _env.str("MEMORYWEB_SUMMARIZER_MODEL", default="").strip()
MEMORYWEB_SUMMARIZER_KEY = _env.str("MEMORYWEB_SUMMARIZER_KEY", default="").strip()
# Seconds per request phase (connect, send, each read); retries after the first attempt
# on a 429, a 5xx, a timeout or a lost connection, waiting BACKOFF * 2^n seconds (with
# jitter; a Retry-After is honoured instead), before the job gives up for this run.
MEMORYWEB_SUMMARIZER_TIMEOUT = _env.float("MEMORYWEB_SUMMARIZER_TIMEOUT", default=60.0)
MEMORYWEB_SUMMARIZER_RETRIES = _env.int("MEMORYWEB_SUMMARIZER_RETRIES", default=3)
MEMORYWEB_SUMMARIZER_BACKOFF = _env.float("MEMORYWEB_SUMMARIZER_BACKOFF", default=1.0)
# Characters of source text sent per request; above it the extractive summarizer first
# picks the sentences that best cover the input, and only those are sent.
MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS = _env.int("MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS",
                                               default=100_000)

# --- The memory gateway (apps/gateway, docs/gateway.md) ------------------------
# OpenAI- and Anthropic-compatible proxy routes under /proxy/ that recall and inject the
# key's namespace's memories, then forward to the upstream API. A route whose upstream URL
# is empty answers 503 (fail closed). URLs are base URLs: OPENAI_URL ends where the API's
# paths begin (https://api.openai.com/v1), ANTHROPIC_URL before /v1 (https://api.anthropic.com).
MEMORYWEB_GATEWAY_OPENAI_URL = _env.str("MEMORYWEB_GATEWAY_OPENAI_URL", default="").strip()
MEMORYWEB_GATEWAY_ANTHROPIC_URL = _env.str("MEMORYWEB_GATEWAY_ANTHROPIC_URL", default="").strip()
# Files holding the upstream keys, read at each request (a rotated key needs no restart;
# the key is never kept in settings, logged or stored). Empty: the client must bring its
# own upstream key in X-Upstream-Authorization, or the upstream gets none.
MEMORYWEB_GATEWAY_OPENAI_KEY_FILE = _env.str("MEMORYWEB_GATEWAY_OPENAI_KEY_FILE", default="").strip()
MEMORYWEB_GATEWAY_ANTHROPIC_KEY_FILE = _env.str("MEMORYWEB_GATEWAY_ANTHROPIC_KEY_FILE",
                                               default="").strip()
# The directory of per-namespace upstream key files (a namespace's gateway.upstreams names a
# file here, never a path). Empty: namespaces cannot have their own keys.
MEMORYWEB_GATEWAY_KEY_DIR = _env.str("MEMORYWEB_GATEWAY_KEY_DIR", default="").strip()
# Milliseconds the recall before forwarding may take; slower (or failing) recall forwards
# the request unchanged (fail-open), counted and logged.
MEMORYWEB_GATEWAY_RECALL_BUDGET_MS = _env.int("MEMORYWEB_GATEWAY_RECALL_BUDGET_MS", default=300)
# Seconds a key the gateway has seen is still admitted (its requests forwarded unchanged,
# fail-open) while the database is down or does not answer, counted from when the
# database last showed it active; 0: every request waits for the database (503 when down).
MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS = _env.int("MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS",
                                               default=3600)
# Memories recalled per request at most, the share of the model's context window they may
# fill (apps/gateway/injection.py has the model table), and the minimum recall score (a
# namespace's recall_defaults.min_score wins).
MEMORYWEB_GATEWAY_RECALL_K = _env.int("MEMORYWEB_GATEWAY_RECALL_K", default=8)
MEMORYWEB_GATEWAY_MEMORY_SHARE = _env.float("MEMORYWEB_GATEWAY_MEMORY_SHARE", default=0.10)
MEMORYWEB_GATEWAY_MIN_SCORE = _env.float("MEMORYWEB_GATEWAY_MIN_SCORE", default=0.3)
# Hybrid scores are relative (each channel scaled to its best candidate): a hit is also
# injected only with this cosine similarity to the query, or a keyword match
# (bench/gateway_relevance.py chose it on LoCoMo's tuning part).
MEMORYWEB_GATEWAY_MIN_SIMILARITY = _env.float("MEMORYWEB_GATEWAY_MIN_SIMILARITY",
                                              default=0.35)
# Seconds to connect to the upstream and to wait for each piece of its answer (a model
# may think for minutes before its first token).
MEMORYWEB_GATEWAY_TIMEOUT = _env.float("MEMORYWEB_GATEWAY_TIMEOUT", default=600.0)
# Learning (docs/gateway.md, "Learning"): after the answer, the exchange (redacted) is
# queued and its candidate facts extracted off the request path. offline: a heuristic over
# the user's sentences, no network; openai: an OpenAI-compatible /chat/completions model at
# EXTRACTOR_URL (its key read from EXTRACTOR_KEY_FILE at each call); auto (the default):
# openai when EXTRACTOR_URL is set, else the gateway's own OpenAI upstream when it has a
# server key, else offline.
MEMORYWEB_GATEWAY_EXTRACTOR = _env.str("MEMORYWEB_GATEWAY_EXTRACTOR", default="auto").strip()
MEMORYWEB_GATEWAY_EXTRACTOR_URL = _env.str("MEMORYWEB_GATEWAY_EXTRACTOR_URL", default="").strip()
MEMORYWEB_GATEWAY_EXTRACTOR_MODEL = _env.str("MEMORYWEB_GATEWAY_EXTRACTOR_MODEL",
                                            default="gpt-4o-mini").strip()
MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE = _env.str("MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE",
                                               default="").strip()
MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT = _env.float("MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT",
                                                default=30.0)
# A quarantined fact becomes a memory when this many exchanges have stated it (or a team
# admin approves it).
MEMORYWEB_GATEWAY_PROMOTE_AFTER = _env.int("MEMORYWEB_GATEWAY_PROMOTE_AFTER", default=2)
# Days a request trace (docs/gateway.md, "Traces"; namespaces whose gateway.trace is not
# off) is kept; older ones are dropped as new ones are written.
MEMORYWEB_GATEWAY_TRACE_DAYS = _env.int("MEMORYWEB_GATEWAY_TRACE_DAYS", default=7)

# --- The timeline's rollups (docs/timeline.md) ------------------------------------------
# The build_rollups job builds namespaces that hold conversation events (a namespace's
# `rollups` setting turns it on or off there); false: only namespaces that turn it on.
MEMORYWEB_ROLLUPS_SCHEDULED = _env.bool("MEMORYWEB_ROLLUPS_SCHEDULED", default=True)
MEMORYWEB_ROLLUP_INTERVAL_MINUTES = _env.int("MEMORYWEB_ROLLUP_INTERVAL_MINUTES", default=60)
MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES = _env.int("MEMORYWEB_ROLLUP_SEGMENT_GAP_MINUTES", default=30)
# The longest summary per level, in characters.
MEMORYWEB_ROLLUP_MAX_CHARS = {
    "segment": _env.int("MEMORYWEB_ROLLUP_SEGMENT_CHARS", default=600),
    "day": _env.int("MEMORYWEB_ROLLUP_DAY_CHARS", default=1200),
    "week": _env.int("MEMORYWEB_ROLLUP_WEEK_CHARS", default=1500),
    "month": _env.int("MEMORYWEB_ROLLUP_MONTH_CHARS", default=2000),
    "year": _env.int("MEMORYWEB_ROLLUP_YEAR_CHARS", default=2500),
}

# --- Encryption at rest (apps/core/key_providers.py, docs/encryption.md) ---------------
# Who wraps the namespaces' data keys: file (a key-encryption key in a file, made on first
# use), env (MEMORYWEB_KEK, base64; MEMORYWEB_KEK_PREVIOUS during a rotation) or a dotted
# path to a KeyProvider (a KMS or Vault transit engine).
MEMORYWEB_KEY_PROVIDER = _env.str("MEMORYWEB_KEY_PROVIDER", default="file")
# The file provider's key-encryption key (empty: kek.key in MEMORYWEB_KEYSTORE_DIR); point
# it at a mounted secret to keep it apart from the wrapped keys.
MEMORYWEB_KEK_PATH = _env.str("MEMORYWEB_KEK_PATH", default="")

# --- Small namespaces' vectors (apps/memories/small_index.py, docs/performance.md) -------
# Embedded store only: a namespace's vectors stay in one SQLite file beside Chroma's,
# searched exactly by brute force, until it holds more than this many; then they move to
# its own Chroma collection (HNSW). 0: every namespace in Chroma from its first memory.
MEMORYWEB_SMALL_INDEX_LIMIT = _env.int("MEMORYWEB_SMALL_INDEX_LIMIT", default=2000)
# SQLite only: a namespace gets its FTS5 keyword table (seven schema entries, which every
# connection parses) once it holds more than this many memories; until then its keyword
# recall is ranked in memory from its rows (apps/memories/small_keywords.py). 0: a table
# from the first memory.
MEMORYWEB_SMALL_KEYWORD_LIMIT = _env.int("MEMORYWEB_SMALL_KEYWORD_LIMIT", default=2000)
