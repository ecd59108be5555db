"""Concurrent writers still build one gapless, intact chain."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.audit.models import AuditEntry
from apps.audit.verify import verify
from apps.memories import services
from apps.tenancy.principal import Principal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif("connection.vendor == 'sqlite'",
                    reason="SQLite's in-memory test database serialises writers anyway; the "
                    "SQLite case runs against a real Daphne process in test_export_daphne.py")
def test_parallel_writers_on_postgresql_keep_the_chain_gapless(agent):
    principal = Principal.for_key(agent.key)
    errors: list[Exception] = []

    def write(worker: int) -> None:
        try:
            for i in range(5):
                services.ingest(principal, {"content": f"worker {worker} note {i}"})
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    before = AuditEntry.objects.count()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert AuditEntry.objects.count() == before + 30
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, before + 31))
    assert verify().ok
