"""A key's ``last_used_at`` is written off the request path (apps/tenancy/key_touch.py),
buffered like the recall statistics; inline when MEMORYWEB_RECALL_STATS_SECONDS is 0
(the test settings: tests/tenancy/test_keys.py covers that)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.roles import Role
from apps.tenancy import key_touch, services
from apps.tenancy.models import ApiKey
from apps.tenancy.services import create_api_key


@pytest.fixture
def buffered(monkeypatch) -> key_touch.TouchBuffer:
    buffer = key_touch.TouchBuffer(interval=3600)  # its thread never fires in a test
    monkeypatch.setattr(services, "key_touches", buffer)
    return buffer


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_request_does_not_write_the_key_and_the_flush_does(alpha, buffered):
    key, raw = create_api_key(role=Role.AGENT, agent_id="a", namespace=alpha)
    before = timezone.now().replace(microsecond=0)
    with CaptureQueriesContext(connection) as queries:
        assert _client(raw).get("/api/v1/memories").status_code == 200
    assert not [q for q in queries if q["sql"].startswith("UPDATE") and "tenancy_apikey" in q["sql"]]
    key.refresh_from_db()
    assert key.last_used_at is None
    assert buffered.flush() == 1
    key.refresh_from_db()
    assert before <= key.last_used_at <= timezone.now()
    assert key.last_used_at.microsecond == 0  # floored to the second
    assert buffered.flush() == 0
    _client(raw).get("/api/v1/memories")  # within MEMORYWEB_KEY_TOUCH_SECONDS: not again
    assert buffered.flush() == 0


def test_keys_used_in_the_same_second_share_one_statement(alpha, buffered):
    keys = [create_api_key(role=Role.AGENT, agent_id=f"a{i}", namespace=alpha)[0] for i in range(30)]
    when = timezone.now().replace(microsecond=0)
    for i, key in enumerate(keys):
        buffered.touch(key.pk, when + timedelta(microseconds=i))
    with CaptureQueriesContext(connection) as queries:
        assert buffered.flush() == 30
    assert len(queries) == 1
    assert set(ApiKey.objects.filter(pk__in=[k.pk for k in keys]).values_list(
        "last_used_at", flat=True)) == {when}


def test_a_later_time_written_elsewhere_is_not_moved_back(alpha, buffered):
    key, _ = create_api_key(role=Role.AGENT, agent_id="a", namespace=alpha)
    later = timezone.now().replace(microsecond=0) + timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=later)  # another process's flush
    buffered.touch(key.pk, timezone.now())
    buffered.flush()
    key.refresh_from_db()
    assert key.last_used_at == later


def test_a_failed_flush_keeps_the_touches(alpha, buffered, monkeypatch):
    key, _ = create_api_key(role=Role.AGENT, agent_id="a", namespace=alpha)
    when = timezone.now().replace(microsecond=0)
    buffered.touch(key.pk, when - timedelta(seconds=5))
    buffered.touch(key.pk, when)

    def busy(due):
        raise OperationalError("database is locked")

    monkeypatch.setattr(key_touch, "_write", busy)
    with pytest.raises(OperationalError):
        buffered.flush()
    monkeypatch.undo()
    buffered.touch(key.pk, when - timedelta(seconds=1))  # an older use meanwhile: kept latest
    assert buffered.flush() == 1
    key.refresh_from_db()
    assert key.last_used_at == when
