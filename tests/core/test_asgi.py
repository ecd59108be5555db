"""The ASGI entry point configures the process for concurrent recall."""

from __future__ import annotations

import sys

import pytest

from apps.core import asgi
from apps.server.asgi import get_asgi_application


@pytest.fixture
def restore_switch_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_gil_switch_interval_comes_from_settings(settings, restore_switch_interval, monkeypatch):
    monkeypatch.setattr("apps.memories.indexing.start_background_drain", lambda seconds: None)
    settings.MEMORYWEB_GIL_SWITCH_MS = 2.5
    application = get_asgi_application()
    assert isinstance(application, asgi.ThreadPoolASGIHandler)
    assert sys.getswitchinterval() == pytest.approx(0.0025)
