"""MemoryWeb settings, read from the environment (django-environ).

Sections: environment and secrets, data directory, apps, database, vector store,
embedder, API and limits, static files, logging; the memory lifecycle's (consolidation,
summarizer, gateway, rollups) are in settings_lifecycle.py, imported below. Every variable
is listed in the README's configuration table.

``MEMORYWEB_ENV`` is ``local`` (default: DEBUG on, a secret key generated once into
the data directory) or ``production`` (DEBUG off, ``SECRET_KEY`` required).

Importing this module reads the environment and nothing else: no directory is created
and no file written (the entry points do that first: ``prepare_data_dir`` in
apps/core/conf.py). Values are checked by the system checks in apps/core/checks.py, so
``manage.py check`` lists every bad one at once and the server refuses to start on any.
Only the two choices the rest of this file depends on fail here: an unknown
``MEMORYWEB_ENV`` and a production without ``SECRET_KEY``.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from memoryweb.channel_layers import redis_channel_layers

BASE_DIR = Path(__file__).resolve().parent.parent

# Any variable may come from a file instead: SECRET_KEY_FILE=/run/secrets/key reads
# SECRET_KEY from that file (django-environ's FileAwareEnv; the file wins over the variable).
env = environ.FileAwareEnv()
env.smart_cast = True

# --- Environment and secrets -------------------------------------------------
MEMORYWEB_ENV = env.str("MEMORYWEB_ENV", default="local")
if MEMORYWEB_ENV not in {"local", "production", "test"}:
    raise ImproperlyConfigured(f"MEMORYWEB_ENV must be local, production or test, not "
                               f"{MEMORYWEB_ENV!r}")
DEBUG = env.bool("DEBUG", default=MEMORYWEB_ENV == "local")

# --- Data directory ----------------------------------------------------------
DATA_DIR = Path(env.str("MEMORYWEB_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()

# Secret files usually end in a newline, which is no part of the key.
SECRET_KEY = env.str("SECRET_KEY", default="").strip()
# Local and test without SECRET_KEY: one random key per data directory, generated on the
# first start (apps.core.conf.prepare_data_dir) and read here on every later one.
MEMORYWEB_GENERATED_SECRET_KEY: Path | None = None
if not SECRET_KEY:
    if MEMORYWEB_ENV == "production":
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when "
                                   "MEMORYWEB_ENV=production")
    MEMORYWEB_GENERATED_SECRET_KEY = DATA_DIR / "secret_key"
    if MEMORYWEB_GENERATED_SECRET_KEY.exists():
        SECRET_KEY = MEMORYWEB_GENERATED_SECRET_KEY.read_text().strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ------------------------------------------------------------
INSTALLED_APPS = [
    # The Django admin with MemoryWeb's site (scoped per namespace, allauth login).
    "apps.dashboard.admin_app.DashboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    # Request, database and cache metrics (MemoryWeb's own series: apps/ops/metrics.py).
    "django_prometheus",
    # Background jobs (apps/ops/jobs.py, apps/ops/tasks.py).
    "huey.contrib.djhuey",
    # People's login (username or e-mail + password) and TOTP multi-factor.
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "apps.core",
    "apps.tenancy",
    "apps.memories",
    "apps.timeline",
    "apps.audit",
    "apps.privacy",
    "apps.live",
    "apps.lifecycle",
    "apps.ops",
    "apps.dashboard",
    "apps.mcp",
    "apps.compat",
    "apps.gateway",
    "apps.server",
]

# Namespace roles are django-guardian object permissions (apps/tenancy/members.py).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ANONYMOUS_USER_NAME = None  # no guardian anonymous user: anonymous callers get nothing

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.request_id.RequestIdMiddleware",
    # Django's own HTML error answers (unknown path, wrong method) become JSON on API paths.
    "apps.core.json_errors.JsonApiErrorsMiddleware",
    "apps.core.middleware.ServerTimingMiddleware",
    "apps.core.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.dashboard.middleware.RequireStaffMfaMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# The lean path (apps/core/asgi.py, docs/performance.md "Lean API path"): a request with
# `Authorization: Bearer …` on an API path runs MIDDLEWARE without what only people's
# browsers need. The key is its whole credential, so none of these can change its answer:
# static files (WhiteNoise serves /static/ only), the session and the person it holds
# (sessions, auth: a Bearer request never logs in by cookie), CSRF (a cookie-borne attack;
# DRF's session authentication checks CSRF itself), messages (the dashboard's), allauth
# (its /accounts/ pages) and the MFA redirect (people's pages). Everything else stays, in
# the same order: metrics before and after, the request id, JSON errors, Server-Timing, the
# body limit, the security headers (SecurityMiddleware, X-Frame-Options) and
# CommonMiddleware (Content-Length, the slash redirect), so answers keep their headers.
# A middleware added to MIDDLEWARE runs on the lean path too unless it is listed here.
MEMORYWEB_BROWSER_MIDDLEWARE = frozenset({
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.dashboard.middleware.RequireStaffMfaMiddleware",
})
MEMORYWEB_API_MIDDLEWARE = [name for name in MIDDLEWARE if name not in MEMORYWEB_BROWSER_MIDDLEWARE]
# Off: every request runs the whole MIDDLEWARE (to compare, or for a middleware of your own
# that API calls must pass through).
MEMORYWEB_LEAN_API = env.bool("MEMORYWEB_LEAN_API", default=True)

# Server-side messages: a new API key shown once in the admin never travels in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

ROOT_URLCONF = "memoryweb.urls"
ASGI_APPLICATION = "memoryweb.asgi.application"

# --- Live (WebSocket) ---------------------------------------------------------
# Channel layer: in-process by default; Redis when REDIS_URL is set, so several Daphne
# processes share events and standing queries (apps/live, docs/live.md).
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Redis reads outlast channels_redis's blocking pop: memoryweb/channel_layers.py.
    CHANNEL_LAYERS = redis_channel_layers(
        REDIS_URL, env.str("MEMORYWEB_CHANNEL_PREFIX", default="memoryweb"))
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Publish memory events to the channel layer (WebSocket feeds and standing queries).
MEMORYWEB_LIVE_EVENTS = env.bool("MEMORYWEB_LIVE_EVENTS", default=True)
MEMORYWEB_LIVE = {
    "auth_timeout_seconds": env.float("MEMORYWEB_LIVE_AUTH_TIMEOUT", default=5.0),
    "max_subscriptions": env.int("MEMORYWEB_LIVE_MAX_SUBSCRIPTIONS", default=20),
    "messages_per_second": env.float("MEMORYWEB_LIVE_RATE", default=100.0),
    "burst": env.int("MEMORYWEB_LIVE_BURST", default=200),
    "send_queue": env.int("MEMORYWEB_LIVE_SEND_QUEUE", default=1000),
    "recheck_seconds": env.float("MEMORYWEB_LIVE_RECHECK_SECONDS", default=15.0),
    # Open connections per principal (API key or person), counted across processes when
    # the cache is Redis: one key cannot hold unbounded sockets (apps/tenancy/budget.py).
    "max_connections_per_principal": env.int("MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY",
                                             default=10),
    "default_min_score": 0.5,
}
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------
# Embedded default: SQLite in WAL mode under the data directory. synchronous=FULL so
# an acknowledged write survives a power cut, not only a process crash.
# IMMEDIATE transactions take the write lock up front, so concurrent writers queue on
# the busy timeout instead of failing with "database is locked" on lock upgrade.
SQLITE_SYNCHRONOUS = env.str("MEMORYWEB_SQLITE_SYNCHRONOUS", default="FULL")
MEMORYWEB_DB_CONNECT_TIMEOUT = env.int("MEMORYWEB_DB_CONNECT_TIMEOUT", default=10)
if "DATABASE_URL" in env:
    DATABASES = {"default": env.db("DATABASE_URL")}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database host that stops answering fails a new connection after this long instead
    # of holding a request thread for ever (the URL's own ?connect_timeout= wins).
    if "postgresql" in DATABASES["default"]["ENGINE"]:
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
            "connect_timeout", MEMORYWEB_DB_CONNECT_TIMEOUT)
    # The same backends, instrumented for Prometheus (queries, errors, connections).
    DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
        "django.db.backends.", "django_prometheus.db.backends.")
else:
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
            "NAME": DATA_DIR / "memoryweb.sqlite3",
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    f"PRAGMA synchronous={SQLITE_SYNCHRONOUS};"
                    "PRAGMA foreign_keys=ON;"
                    "PRAGMA busy_timeout=30000;"
                    # Every delete and update zeroes the bytes it frees: a derived copy of
                    # a memory's text (a rollup's excerpt, a replaced summary, an edited
                    # row) leaves nothing in free space for a later erasure to miss.
                    "PRAGMA secure_delete=ON;"
                ),
            },
        }
    }
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=600))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Threads that run HTTP requests (each holds at most one database connection).
MEMORYWEB_HTTP_THREADS = env.int("MEMORYWEB_HTTP_THREADS", default=8)
# How long a Python thread may hold the GIL while others wait (Python's default: 5 ms).
# A hybrid recall runs SQLite on one thread while another embeds and queries Chroma;
# each time SQLite hands back a result it waits for the GIL, up to this long.
MEMORYWEB_GIL_SWITCH_MS = env.float("MEMORYWEB_GIL_SWITCH_MS", default=1.0)

# --- Cache, background jobs, metrics ------------------------------------------
# The cache holds login rate limits and used TOTP codes: shared through Redis when
# scaled (so a code cannot be replayed on another process), in-process otherwise.
CACHES = {"default": {
    "BACKEND": "django_prometheus.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
    "KEY_PREFIX": env.str("MEMORYWEB_CHANNEL_PREFIX", default="memoryweb"),
} if REDIS_URL else {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
                     # Rate budgets and connection leases live here too (one counter per
                     # principal and window): Django's 300 entries would cull a busy key's
                     # count and start its budget again.
                     "OPTIONS": {"MAX_ENTRIES": env.int("MEMORYWEB_LOCAL_CACHE_ENTRIES",
                                                        default=100_000)}}}
# Jobs (huey): the queue is Redis when scaled (run `manage.py run_huey` as the worker
# process), else a SQLite file in the data directory served by a consumer inside the
# server process (MEMORYWEB_JOBS_IN_PROCESS).
MEMORYWEB_JOBS_IN_PROCESS = env.bool("MEMORYWEB_JOBS_IN_PROCESS", default=not REDIS_URL)
# A running job renews its lease this often; four missed beats and another worker takes
# the job over (a killed worker no longer blocks it for the job's whole timeout).
MEMORYWEB_JOB_HEARTBEAT_SECONDS = env.float("MEMORYWEB_JOB_HEARTBEAT_SECONDS", default=30.0)
_HUEY_CONSUMER = {"workers": env.int("MEMORYWEB_JOB_WORKERS", default=2), "worker_type": "thread",
                  "periodic": True, "check_worker_health": True}
if REDIS_URL:
    HUEY = {"huey_class": "huey.RedisHuey", "url": REDIS_URL, "immediate": False,
            "name": env.str("MEMORYWEB_CHANNEL_PREFIX", default="memoryweb") + "-jobs",
            "consumer": _HUEY_CONSUMER}
else:
    HUEY = {"huey_class": "huey.SqliteHuey", "filename": str(DATA_DIR / "jobs.sqlite3"),
            "immediate": False, "name": "memoryweb-jobs", "consumer": _HUEY_CONSUMER}
# /metrics answers only with `Authorization: Bearer $MEMORYWEB_METRICS_TOKEN` (compared in
# constant time); without a token it is off (404).
MEMORYWEB_METRICS_TOKEN = env.str("MEMORYWEB_METRICS_TOKEN", default="").strip()
PROMETHEUS_METRIC_NAMESPACE = ""

# --- Vector store (ChromaDB) -------------------------------------------------
# Empty CHROMA_URL: an embedded PersistentClient under DATA_DIR/chroma.
CHROMA_URL = env.str("CHROMA_URL", default="")
# Seconds a request to the Chroma server may take before it is an error (recall 503, the
# gateway fails open, the outbox retries): a hung server must not hold threads for ever.
MEMORYWEB_CHROMA_TIMEOUT = env.float("MEMORYWEB_CHROMA_TIMEOUT", default=30.0)
CHROMA_PATH = DATA_DIR / "chroma"
# The embedded server's admin socket (apps/ops/control.py): commands run beside the server
# do their vector-store work through it (docs/operations.md). Empty: off (they then need
# the server stopped). Absolute and short (the kernel's limit is 107 bytes).
MEMORYWEB_CONTROL_SOCKET = env.str("MEMORYWEB_CONTROL_SOCKET",
                                   default=str(DATA_DIR / "control.sock"))
CHROMA_COLLECTION_PREFIX = env.str("MEMORYWEB_CHROMA_PREFIX", default="mw_")
# Candidates Chroma's HNSW explores per query (``ef_search``; approximate: two indexes of
# the same vectors can differ in a near-tie). Higher: closer to exact (the namespace's
# size: exact). 0: Chroma's 100. Applied to new collections and to existing ones opened.
MEMORYWEB_VECTOR_SEARCH_EF = env.int("MEMORYWEB_VECTOR_SEARCH_EF", default=0)
# Chroma's collection cache loses an evicted collection's latest vectors (chromadb 1.5.9;
# apps/memories/chroma_cache.py). Embedded: collections the engine holds before the server
# restarts it (0: 200; at most 4/5 of RLIMIT_NOFILE // 5). Collections under
# MEMORYWEB_VECTOR_SYNC_UNTIL vectors sync their index at every write (0: every 1,000).
MEMORYWEB_VECTOR_OPEN_COLLECTIONS = env.int("MEMORYWEB_VECTOR_OPEN_COLLECTIONS", default=0)
MEMORYWEB_VECTOR_SYNC_UNTIL = env.int("MEMORYWEB_VECTOR_SYNC_UNTIL", default=2000)

# --- Embedder ----------------------------------------------------------------
# Dotted path to a factory returning an apps.memories.embeddings.Embedder.
MEMORYWEB_EMBEDDER = env.str("MEMORYWEB_EMBEDDER", default="minilm-onnx")
MEMORYWEB_EMBEDDER_THREADS = env.int("MEMORYWEB_EMBEDDER_THREADS", default=0)  # 0 = onnxruntime default
MEMORYWEB_EMBED_BATCH = env.int("MEMORYWEB_EMBED_BATCH", default=8)  # texts per model run: embeddings.py

# --- Consolidation, summarizer, gateway, rollups (memoryweb/settings_lifecycle.py) ------
from memoryweb.settings_lifecycle import *  # noqa: E402,F403

# --- API and limits (documented in docs/api.md and the README) ---------------
MEMORYWEB_LIMITS = {
    "max_body_bytes": env.int("MEMORYWEB_MAX_BODY_BYTES", default=2 * 1024 * 1024),
    "max_content_bytes": env.int("MEMORYWEB_MAX_CONTENT_BYTES", default=32 * 1024),
    "max_batch": env.int("MEMORYWEB_MAX_BATCH", default=1000),
    "max_k": env.int("MEMORYWEB_MAX_K", default=100),
    "max_filter_delete": env.int("MEMORYWEB_MAX_FILTER_DELETE", default=10_000),
    "max_query_bytes": env.int("MEMORYWEB_MAX_QUERY_BYTES", default=4096),
    "max_tags": 32,
    "max_tag_length": 64,
    "max_metadata_bytes": env.int("MEMORYWEB_MAX_METADATA_BYTES", default=16 * 1024),
    "max_id_length": 128,
    "max_page_size": 1000,
    "max_metadata_filters": 16,
    # Arrays/objects inside each other in one JSON body or message (the outer one is 1):
    # deeper text is refused before parsing (400 parse_error), since Python's decoder
    # recurses per level and ~1,000 levels crashed it (apps/core/parsers.py).
    "max_json_depth": env.int("MEMORYWEB_MAX_JSON_DEPTH", default=64),
}
DATA_UPLOAD_MAX_MEMORY_SIZE = MEMORYWEB_LIMITS["max_body_bytes"]
# Audit log (apps/audit): the chain's tip is also written to this file after each commit,
# so cutting entries off the end is detectable; empty disables it (not recommended).
MEMORYWEB_AUDIT_ANCHOR = env.str("MEMORYWEB_AUDIT_ANCHOR", default=str(DATA_DIR / "audit-anchor.json"))
# The key store (apps/core/keystore.py): the erasure ledger and its selector key, outside
# the data directory so no backup or copy of it carries them (docs/privacy.md#backups-and-erasure).
# Default: a sibling of the data directory, one per deployment.
MEMORYWEB_KEYSTORE_DIR = Path(env.str("MEMORYWEB_KEYSTORE_DIR",
                                      default=f"{DATA_DIR}-keystore")).resolve()
# Audit every recall too (a namespace may override); exports are always audited.
MEMORYWEB_AUDIT_READS = env.bool("MEMORYWEB_AUDIT_READS", default=False)
# Erasure approvals by someone other than the requester (a key counts as whoever created
# it; apps/privacy/four_eyes.py). On in production: one person alone cannot erase data.
MEMORYWEB_ERASURE_FOUR_EYES = env.bool("MEMORYWEB_ERASURE_FOUR_EYES",
                                       default=MEMORYWEB_ENV == "production")
# Recall: default mode (vector | lexical | hybrid) and candidates per channel in hybrid.
MEMORYWEB_RECALL_MODE = env.str("MEMORYWEB_RECALL_MODE", default="hybrid")
MEMORYWEB_HYBRID_POOL = env.int("MEMORYWEB_HYBRID_POOL", default=50)
# SQLite keyword queries leave out terms found in more than this share of all memories
# (they barely move BM25 but dominate its cost); 1.0 keeps every term.
MEMORYWEB_LEXICAL_MAX_DF = env.float("MEMORYWEB_LEXICAL_MAX_DF", default=0.2)
# Opt-in bounded keyword stage (apps/memories/keyword_search.py, docs/recall.md): score
# only the WINDOW most recent memories plus older ones holding a term found in at most
# RARE_DF memories (loses recall on older ones, measured on LoCoMo). 0: every match.
MEMORYWEB_LEXICAL_WINDOW = env.int("MEMORYWEB_LEXICAL_WINDOW", default=0)
MEMORYWEB_LEXICAL_RARE_DF = env.int("MEMORYWEB_LEXICAL_RARE_DF", default=1_000)
# Conversation context (apps/memories/context.py, docs/recall.md): a session memory is
# indexed with the one before it; its vector mixes theirs ("mix", weight MIX_WEIGHT) or
# embeds both texts ("text"); keyword recall weighs the context's words by CONTEXT_WEIGHT.
MEMORYWEB_INDEX_CONTEXT = env.bool("MEMORYWEB_INDEX_CONTEXT", default=True)
MEMORYWEB_CONTEXT_EMBEDDING = env.str("MEMORYWEB_CONTEXT_EMBEDDING", default="mix")
MEMORYWEB_CONTEXT_MIX_WEIGHT = env.float("MEMORYWEB_CONTEXT_MIX_WEIGHT", default=0.4)
MEMORYWEB_LEXICAL_CONTEXT_WEIGHT = env.float("MEMORYWEB_LEXICAL_CONTEXT_WEIGHT", default=0.25)
# Keyword recall's engine (docs/recall.md, "An in-memory keyword index"): "sql" ranks in
# the database (FTS5 bm25 / ts_rank_cd); "memory" ranks from a per-namespace in-memory
# BM25 index (apps/memories/keyword_index.py) kept in step with SQL through a change log
# (rows kept LOG_MINUTES), at most MEMORY_MB per process (least recently searched
# namespaces are evicted and rebuilt from SQL when next searched).
MEMORYWEB_KEYWORD_ENGINE = env.str("MEMORYWEB_KEYWORD_ENGINE", default="auto")
MEMORYWEB_KEYWORD_MEMORY_MB = env.float("MEMORYWEB_KEYWORD_MEMORY_MB", default=512.0)
MEMORYWEB_KEYWORD_LOG_MINUTES = env.int("MEMORYWEB_KEYWORD_LOG_MINUTES", default=60)
# The dashboard's memory search lists at most this many matches (it looks for one more,
# so a capped search says "1,000+ matches" and refuses select-all; docs/dashboard.md).
MEMORYWEB_DASHBOARD_SEARCH_LIMIT = env.int("MEMORYWEB_DASHBOARD_SEARCH_LIMIT", default=1000)
# Hybrid fusion: "weighted" (scores scaled per channel) or "rrf" (reciprocal rank).
# Defaults measured on LoCoMo (docs/recall.md): weighted beat RRF at every k; vector 1,
# lexical 3, session 1.2 tuned on conversations 0-4, confirmed on 5-9.
MEMORYWEB_FUSION = env.str("MEMORYWEB_FUSION", default="weighted")
# Hybrid weights: the two channels, then priors scored on their candidates (0..1 each):
# recency (half-life below, relative to the newest candidate), importance, and the
# reranker's score when one is configured. The fused score is the weighted mean.
MEMORYWEB_FUSION_WEIGHTS = {
    "vector": env.float("MEMORYWEB_FUSION_WEIGHT_VECTOR", default=1.0),
    "lexical": env.float("MEMORYWEB_FUSION_WEIGHT_LEXICAL", default=1.5),
    # The best other same-session candidate's fused score (fusion.session_context).
    "session": env.float("MEMORYWEB_FUSION_WEIGHT_SESSION", default=1.2),
    "recency": env.float("MEMORYWEB_FUSION_WEIGHT_RECENCY", default=0.0),
    "importance": env.float("MEMORYWEB_FUSION_WEIGHT_IMPORTANCE", default=0.0),
    # A memory's strength (apps/memories/strength.py, docs/lifecycle.md): chosen on
    # LoCoMo's tuning part (docs/recall.md).
    "strength": env.float("MEMORYWEB_FUSION_WEIGHT_STRENGTH", default=0.0),
    "rerank": env.float("MEMORYWEB_FUSION_WEIGHT_RERANK", default=3.0),
}
# Settings under which every recall would be empty (or fail) are refused at start-up by the
# system checks, as a namespace's recall_defaults are when saved (ranking.check).
MEMORYWEB_RECENCY_HALF_LIFE_DAYS = env.float("MEMORYWEB_RECENCY_HALF_LIFE_DAYS", default=30.0)
# The half-life of a memory's strength by age (since it happened or was last recalled).
MEMORYWEB_STRENGTH_HALF_LIFE_DAYS = env.float("MEMORYWEB_STRENGTH_HALF_LIFE_DAYS", default=90.0)
# Controlled forgetting (apps/lifecycle/forgetting.py): a memory whose strength stays below
# the floor this many days is proposed for forgetting (an erasure request a person makes).
MEMORYWEB_FORGET_FLOOR = env.float("MEMORYWEB_FORGET_FLOOR", default=0.25)
MEMORYWEB_FORGET_AFTER_DAYS = env.int("MEMORYWEB_FORGET_AFTER_DAYS", default=30)
# Results scoring below this are dropped (unset: none); MMR diversity lambda (unset: off).
MEMORYWEB_MIN_SCORE = env.float("MEMORYWEB_MIN_SCORE", default=None)
MEMORYWEB_MMR_LAMBDA = env.float("MEMORYWEB_MMR_LAMBDA", default=None)
# Optional reranker: dotted path of a class implementing apps.memories.rerank.Reranker;
# it rescores the top MEMORYWEB_RERANK_DEPTH fused candidates.
MEMORYWEB_RERANKER = env.str("MEMORYWEB_RERANKER", default="")
MEMORYWEB_RERANK_DEPTH = env.int("MEMORYWEB_RERANK_DEPTH", default=30)
# Near-duplicates on ingest: cosine similarity at or above which a new memory is linked
# (or skipped) per its namespace's policy.
MEMORYWEB_NEAR_DUPLICATE_THRESHOLD = env.float("MEMORYWEB_NEAR_DUPLICATE_THRESHOLD", default=0.95)
# Idempotency-Key records older than this are dropped by the hourly retention job.
MEMORYWEB_IDEMPOTENCY_DAYS = env.float("MEMORYWEB_IDEMPOTENCY_DAYS", default=7.0)

# Drop-in routes for clients of the servers MemoryWeb replaces (docs/integrations.md):
# seed 000's API under MEMORYWEB_CMM_PREFIX (its clients call /ingest, /memory/42...) and
# seed 003's memory API under MEMORYWEB_MEMORYOSS_PREFIX (its clients call /v1/store...).
# An empty prefix mounts seed 000's routes at the root; "off" leaves a door out. A key is
# required either way.
def _prefix(name: str, default: str) -> str | None:
    value = env.str(name, default=default).strip().strip("/")
    return None if value == "off" else (value + "/" if value else "")


MEMORYWEB_CMM_PREFIX = _prefix("MEMORYWEB_CMM_PREFIX", "cmm")
MEMORYWEB_MEMORYOSS_PREFIX = _prefix("MEMORYWEB_MEMORYOSS_PREFIX", "v1")
# Key checks through seed 003's /v1/auth/token, per client address.
MEMORYWEB_TOKEN_RATE = env.str("MEMORYWEB_TOKEN_RATE", default="60/min")
# Reverse proxies in front of the server that append to X-Forwarded-For. Per-address
# limits (the key check above, the login limits) key on the peer address unless this
# says otherwise: a client could send any X-Forwarded-For (apps/core/client_address.py).
MEMORYWEB_TRUSTED_PROXIES = env.int("MEMORYWEB_TRUSTED_PROXIES", default=0)
# Each server process drains the vector-index outbox this often (0 = never).
MEMORYWEB_DRAIN_SECONDS = env.float("MEMORYWEB_DRAIN_SECONDS", default=5.0)
# Recall statistics (access_count, last_recalled_at) are flushed this often; 0 = inline.
MEMORYWEB_RECALL_STATS_SECONDS = env.float("MEMORYWEB_RECALL_STATS_SECONDS", default=1.0)
# Keys update last_used_at at most this often, so reads do not become writes.
MEMORYWEB_KEY_TOUCH_SECONDS = env.int("MEMORYWEB_KEY_TOUCH_SECONDS", default=60)
# A process remembers a key it authenticated this long (apps/tenancy/key_cache.py): no SQL
# per request. Revoked, rotated or changed in this process, it is forgotten at once; done
# in another process (a second Daphne, a shell), it keeps working there at most this long.
# 0: look keys up on every request.
MEMORYWEB_KEY_CACHE_SECONDS = env.float("MEMORYWEB_KEY_CACHE_SECONDS", default=5.0)
# A rotated key's old secret keeps working this long (a rotate request may choose).
MEMORYWEB_KEY_ROTATION_GRACE_SECONDS = env.int("MEMORYWEB_KEY_ROTATION_GRACE_SECONDS", default=3600)
# Requests per principal (API key or person), DRF rate syntax; empty = unlimited.
MEMORYWEB_RATE_LIMIT = env.str("MEMORYWEB_RATE_LIMIT", default="6000/min")
# One budget for every door (REST, drop-in routes, MCP tools/call, WebSocket messages):
# apps/tenancy/budget.py parses it per request; nonsense stops the start instead (checks).

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenancy.authentication.ApiKeyAuthentication",
        "apps.tenancy.authentication.PrincipalSessionAuthentication",
    ],
    # Secure by default: a view that needs less says so explicitly.
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenancy.permissions.IsPrincipal"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    # Scope first: every generic list is cut to the caller's namespaces (tenancy/filters.py).
    "DEFAULT_FILTER_BACKENDS": [
        "apps.tenancy.filters.PrincipalScopeFilter",
        "django_filters.rest_framework.DjangoFilterBackend",
    ],
    # Shared schema rules (error answers, strict bodies, bounded JSON): apps/core/openapi.py.
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["apps.tenancy.throttling.PrincipalRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    # DRF's JSON parser with a nesting limit (MEMORYWEB_MAX_JSON_DEPTH): 400, never 500.
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    # Any DRF throttle keyed by address believes X-Forwarded-For only this far.
    "NUM_PROXIES": MEMORYWEB_TRUSTED_PROXIES,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "MemoryWeb API",
    "DESCRIPTION": "Multi-tenant long-term memory for AI agents. Authenticate with "
    "`Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set (else drf-spectacular names collisions by hash and
    # `check --deploy` warns, drf_spectacular.W001).
    "ENUM_NAME_OVERRIDES": {
        "KindEnum": "apps.memories.models.MemoryKind",
        "StorableKindEnum": "apps.core.kinds.STORABLE_KINDS",
        # What consolidation may merge: no events, no summaries (docs/lifecycle.md).
        "ConsolidatedKindEnum": "apps.compat.openapi.CONSOLIDATED_KINDS",
        "ConsolidatedMemoryTypeEnum": "apps.compat.openapi.CONSOLIDATED_MEMORY_TYPES",
        "MemoryTypeEnum": "apps.compat.openapi.MEMORY_TYPES",  # seed 003's memory_type
        "RoleEnum": ["reader", "agent", "admin"],  # a role one gives: keys, members, invitations
        "KeyRoleEnum": "apps.core.roles.ROLE_CHOICES",  # a key's role (system keys too)
    },
}

# --- People's login (django-allauth) and the dashboard ------------------------
# The dashboard (the Django admin, /admin/) and the browser session both log in here.
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/admin/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
# No e-mail server is assumed: addresses are not verified by mail (an operator creates
# people with `manage.py add_member` or in the admin).
ACCOUNT_EMAIL_VERIFICATION = env.str("MEMORYWEB_EMAIL_VERIFICATION", default="none")
ACCOUNT_ADAPTER = "apps.dashboard.accounts.AccountAdapter"
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
# Turning on TOTP or changing recovery codes asks for the password again unless the
# person authenticated (logged in, or re-entered it) within this many seconds; the
# adapter counts the login itself, so activating TOTP right after logging in does not
# ask twice (allauth's own default, 300 s, made explicit).
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
# Anyone may create an account only when this is on (off: people are invited).
MEMORYWEB_OPEN_SIGNUP = env.bool("MEMORYWEB_OPEN_SIGNUP", default=False)
# A team admin's invitation to a namespace can be accepted for this many days: long
# enough to be seen, short enough that a forgotten offer does not stay open for ever.
MEMORYWEB_INVITATION_DAYS = env.int("MEMORYWEB_INVITATION_DAYS", default=7)
# The dashboard's bulk re-tag, change of kind and forget-agents act within the request up
# to this many memories; above it they run as a background job with a progress page
# (apps/memories/bulk_jobs.py), so a large selection neither holds a request for
# seconds nor dies with it. 0: always a job.
MEMORYWEB_DASHBOARD_BULK_INLINE_MAX = env.int("MEMORYWEB_DASHBOARD_BULK_INLINE_MAX", default=50)
# Memories a bulk job changes per transaction: each batch commits with the job's progress,
# so a restarted worker resumes after the last one. Smaller: finer progress and shorter
# write locks; larger: fewer transactions.
MEMORYWEB_DASHBOARD_BULK_BATCH = env.int("MEMORYWEB_DASHBOARD_BULK_BATCH", default=200)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env.str("MEMORYWEB_MFA_ISSUER", default="MemoryWeb")
# Admin roles need TOTP: without it a team-admin role is dormant in its own namespace
# (other roles keep working) and a system admin's session does nothing (apps/tenancy/mfa.py).
MEMORYWEB_REQUIRE_MFA = env.bool("MEMORYWEB_REQUIRE_MFA", default=MEMORYWEB_ENV == "production")
# Password-reset mail: printed to the console locally; in production dropped unless a real
# backend is configured (reset links in a log would let anyone who reads it take over).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.dummy.EmailBackend"
                        if MEMORYWEB_ENV == "production"
                        else "django.core.mail.backends.console.EmailBackend")

# --- Internationalisation, static files ---------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if MEMORYWEB_ENV == "production"
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = MEMORYWEB_ENV != "production"

# --- Security (production) -----------------------------------------------------
# HTTPS only, behind a proxy that terminates TLS and sets X-Forwarded-Proto (docs/deploy.md);
# `manage.py check --deploy` is clean with these defaults. Local and test serve plain
# HTTP on 127.0.0.1 (`make run`) and set none of them.
if MEMORYWEB_ENV == "production":
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # A plain-HTTP request that reaches the app is sent to HTTPS (the proxy normally
    # redirects first). The probes and /metrics are exempt: load balancers and Prometheus
    # call each process's own port directly.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^(health|readiness|metrics)$"]
    # Browsers remember to use HTTPS only (sent on HTTPS answers only). Turn it down with
    # SECURE_HSTS_SECONDS=0 while trying out a new host name.
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

# --- Logging -------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "chromadb": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}
