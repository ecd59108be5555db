"""Settings for the test suite: a fresh data directory (SQLite + Chroma) per run."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MEMORYWEB_ENV", "test")
if "MEMORYWEB_DATA_DIR" not in os.environ:
    _data_dir = tempfile.mkdtemp(prefix="memoryweb-test-")
    os.environ["MEMORYWEB_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
os.environ.setdefault("DEBUG", "false")

from memoryweb.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
MEMORYWEB_RECALL_STATS_SECONDS = 0  # inline, so tests see counts at once (buffer tested apart)
# The WebSocket tests import the ASGI application in-process: no background outbox
# drain thread there (it would touch the database outside any test's access).
MEMORYWEB_DRAIN_SECONDS = 0
