"""WhiteNoise's scan of the static files, once per test process instead of once per client.

Every Django test client (``APIClient``, ``Client``; each ``Caller`` of
tests/helpers/callers.py has its own) builds the middleware chain on its first request,
and WhiteNoise's middleware, with ``WHITENOISE_USE_FINDERS`` on (every environment but
production), lists every static file through the finders and stats each (~560 files, ~30
ms). The isolation matrix alone built ~3,000 chains: a quarter of its time (profiled
2026-12-06). The files do not change during a run, so the scan's result is kept, keyed
by every setting it reads; a test that changes one of them gets a scan of its own. The
middleware still serves exactly what a fresh scan would (the same dictionary of files).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware

#: The method as WhiteNoise defines it.
ORIGINAL = WhiteNoiseMiddleware.add_files_from_finders
#: The settings a scan depends on (the finders, their directories and apps, the URL
#: prefix, and WhiteNoise's own, which shape each file's headers).
SETTINGS = (
    "INSTALLED_APPS",
    "STATICFILES_DIRS",
    "STATICFILES_FINDERS",
    "STATIC_URL",
    "FORCE_SCRIPT_NAME",
    "STORAGES",
    "DEBUG",
    "WHITENOISE_STATIC_PREFIX",
    "WHITENOISE_MAX_AGE",
    "WHITENOISE_ALLOW_ALL_ORIGINS",
    "WHITENOISE_CHARSET",
    "WHITENOISE_MIMETYPES",
    "WHITENOISE_ADD_HEADERS_FUNCTION",
    "WHITENOISE_INDEX_FILE",
    "WHITENOISE_IMMUTABLE_FILE_TEST",
)
_MISSING = object()


def _key(middleware: WhiteNoiseMiddleware) -> str:
    values = [repr(getattr(settings, name, _MISSING)) for name in SETTINGS]
    return repr((middleware.static_prefix, values))


@pytest.fixture(scope="session", autouse=True)
def static_files_scanned_once() -> Iterator[dict[str, dict]]:
    """For the session: the first scan of a configuration is kept; later middleware
    instances of that configuration take its files."""
    scans: dict[str, dict] = {}

    def add_files_from_finders(self: WhiteNoiseMiddleware) -> None:
        key = _key(self)
        found = scans.get(key)
        if found is None:
            # The scan into an empty dictionary, then laid over what the middleware
            # already holds (the static root's files), as the scan itself would.
            held, self.files = self.files, {}
            try:
                ORIGINAL(self)
                found = scans[key] = self.files
            finally:
                self.files = held
        self.files.update(found)

    WhiteNoiseMiddleware.add_files_from_finders = add_files_from_finders
    try:
        yield scans
    finally:
        WhiteNoiseMiddleware.add_files_from_finders = ORIGINAL
