"""Fixtures for tests of the OpenAI-compatible summarizer provider: a fake upstream on
loopback (tests/helpers/fake_upstream.py) and the settings that point the provider at it.
Shared by the provider's own tests (tests/core/test_summarizer_openai.py) and the rollups
built through it (tests/timeline/test_provider_rollup.py), so both run against the same
fake server."""

from __future__ import annotations

import pytest

from tests.helpers.fake_upstream import KEY, MODEL, FakeUpstream


@pytest.fixture
def upstream():
    """The fake upstream, listening on a free loopback port for the test; it answers with
    a quoting model until a test sets its ``script``."""
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def provider_settings(settings, upstream):
    """``MEMORYWEB_SUMMARIZER=openai`` pointed at the fake upstream, with short waits."""
    settings.MEMORYWEB_SUMMARIZER = "openai"
    settings.MEMORYWEB_SUMMARIZER_URL = upstream.url
    settings.MEMORYWEB_SUMMARIZER_MODEL = MODEL
    settings.MEMORYWEB_SUMMARIZER_KEY = KEY
    settings.MEMORYWEB_SUMMARIZER_TIMEOUT = 5.0
    settings.MEMORYWEB_SUMMARIZER_RETRIES = 3
    settings.MEMORYWEB_SUMMARIZER_BACKOFF = 0.01
    return settings
