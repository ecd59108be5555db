"""Settings for the test suite: a fresh data directory (SQLite + Chroma) per run."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MEMORYWEB_ENV", "test")
# pytest-xdist workers inherit the controller's environment, so a data directory made
# there would be shared: each worker gets its own (its tests replace and delete files in it).
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if "MEMORYWEB_DATA_DIR" not in os.environ or (
        _worker and os.environ.get("MEMORYWEB_TEST_DATA_DIR_OF") != _worker):
    _data_dir = tempfile.mkdtemp(prefix=f"memoryweb-test-{_worker or 'main'}-")
    os.environ["MEMORYWEB_DATA_DIR"] = _data_dir
    os.environ["MEMORYWEB_TEST_DATA_DIR_OF"] = _worker or ""
    atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
os.environ.setdefault("DEBUG", "false")
# This run's (this xdist worker's) keys, channel groups and job queue on a shared Redis:
# the Daphne servers tests start inherit it, so two workers' servers never take each
# other's jobs or live events (tests that share Redis between servers set their own).
if os.environ.get("MEMORYWEB_TEST_PREFIX_OF") != os.environ["MEMORYWEB_DATA_DIR"]:
    os.environ["MEMORYWEB_CHANNEL_PREFIX"] = "mw-" + os.path.basename(os.environ["MEMORYWEB_DATA_DIR"])
    os.environ["MEMORYWEB_TEST_PREFIX_OF"] = os.environ["MEMORYWEB_DATA_DIR"]

from apps.core.conf import ensure_secret_key  # noqa: E402
from memoryweb.settings import *  # noqa: E402, F403

# pytest-django starts Django itself, so the entry points' start-up step
# (apps.core.conf.prepare_data_dir) is done here: the static root WhiteNoise looks at, and
# the data directory's generated key, which the Daphne servers tests start on this
# directory read as well (the audit anchor they sign is checked here).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
if MEMORYWEB_GENERATED_SECRET_KEY is not None:  # noqa: F405
    SECRET_KEY = ensure_secret_key(MEMORYWEB_GENERATED_SECRET_KEY)  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
MEMORYWEB_RECALL_STATS_SECONDS = 0  # inline, so tests see counts at once (buffer tested apart)
# The WebSocket tests import the ASGI application in-process: no background outbox
# drain thread there (it would touch the database outside any test's access).
MEMORYWEB_DRAIN_SECONDS = 0
# Nor the background-job consumer (Daphne subprocesses in tests run it, as in production).
MEMORYWEB_JOBS_IN_PROCESS = False
# Nor the admin socket: pytest is no server (tests start Daphne subprocesses for that),
# and in-process tests open the embedded store directly.
MEMORYWEB_CONTROL_SOCKET = ""

if REDIS_URL:  # noqa: F405  (scaled mode: make test-scaled)
    # One test run's keys apart from any other's on the shared Redis.
    _run = os.path.basename(os.environ["MEMORYWEB_DATA_DIR"])
    CACHES["default"]["KEY_PREFIX"] = f"test-{_run}"  # noqa: F405
    # The in-process WebSocket tests (WebsocketCommunicator) publish events from the
    # request's thread onto pytest's per-test event loop; channels_redis binds its
    # connections to one loop, so those tests keep the in-memory layer. The Redis layer is
    # tested for real across Daphne processes (tests/live/test_live_daphne.py,
    # tests/ops/test_scaled.py), which is where it matters.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    HUEY["name"] = f"test-{_run}-jobs"  # noqa: F405

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # Django's in-memory test database, said explicitly: pytest-django recognises only
    # Django's own SQLite engine, and would give each xdist worker a test database named
    # after the file path of the Prometheus-instrumented one ("test_/tmp/…_gw0").
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}  # noqa: F405
