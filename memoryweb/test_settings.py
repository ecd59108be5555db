"""Settings for the test suite: a fresh data directory (SQLite + Chroma) per run."""

import os
import tempfile

os.environ.setdefault("MEMORYWEB_ENV", "test")
os.environ.setdefault("MEMORYWEB_DATA_DIR", tempfile.mkdtemp(prefix="memoryweb-test-"))
os.environ.setdefault("DEBUG", "false")

from memoryweb.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
