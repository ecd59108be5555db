"""Gateway request traces in this process (apps/gateway/traces.py, admin_traces.py): written
only for a namespace that opted in, content-free at ``metadata``, the query redacted at
``content``; pruned past MEMORYWEB_GATEWAY_TRACE_DAYS; a registered store that erasure
reaches; the dashboard's read-only, scoped list. Over the wire:
tests/gateway/test_dashboard_traces_wire.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.gateway import traces
from apps.gateway.models import GatewayTrace
from apps.memories import stores
from tests.helpers.people import person, store

#: traces.record() tidies its thread's connections (close_old_connections) as on the
#: gateway's pool threads; inside a test transaction on PostgreSQL that would close the
#: test's own connection, so these tests run outside one.
pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-proj-Abcdefghijklmnop1234567890XYZ"
LIST = "/admin/gateway/gatewaytrace/"


def trace(namespace, level: str, **fields) -> traces.Trace:
    values = {"namespace": namespace, "level": level, "api": "chat", "model": "gpt-4o",
              "mode": "full", "agent_id": "agent-1", "injected": 1, "memory_ids": ("m-1",),
              "added_ms": 4.2, "upstream_status": 200,
              "query": f"Where is the deploy script? my key is {SECRET}"}
    return traces.Trace(**(values | fields))


@pytest.fixture(autouse=True)
def no_prune_throttle(monkeypatch):
    monkeypatch.setattr(traces, "_pruned_at", 0.0)


def test_off_writes_nothing(alpha):
    assert traces.record(trace(alpha, "off")) is None
    assert traces.record(trace(alpha, traces.level_of(alpha))) is None  # the default is off
    assert not GatewayTrace.objects.exists()


def test_metadata_keeps_ids_and_numbers_but_no_text(alpha):
    row = traces.record(trace(alpha, "metadata"))
    row.refresh_from_db()
    assert (row.api, row.model, row.mode, row.injected, row.memory_ids, row.upstream_status,
            row.added_ms) == ("chat", "gpt-4o", "full", 1, ["m-1"], 200, 4.2)
    assert row.query == ""


def test_content_keeps_the_query_redacted(alpha):
    row = traces.record(trace(alpha, "content"))
    row.refresh_from_db()
    assert row.query.startswith("Where is the deploy script?")
    assert SECRET not in row.query and "[REDACTED" in row.query


def test_level_follows_the_namespace_setting(alpha):
    alpha.gateway = {"trace": "content"}
    assert traces.level_of(alpha) == "content"
    assert traces.level_of(None) == "off"


def test_old_traces_are_pruned_on_write(alpha, settings, monkeypatch):
    settings.MEMORYWEB_GATEWAY_TRACE_DAYS = 7
    old = traces.record(trace(alpha, "metadata"))
    GatewayTrace.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    traces.record(trace(alpha, "metadata"))  # pruned a moment ago: not again so soon
    assert GatewayTrace.objects.filter(pk=old.pk).exists()
    monkeypatch.setattr(traces, "_pruned_at", 0.0)  # a minute later
    recent = traces.record(trace(alpha, "metadata"))
    GatewayTrace.objects.exclude(pk=recent.pk).exclude(pk=old.pk).delete()
    assert list(GatewayTrace.objects.values_list("pk", flat=True)) == [recent.pk]


def test_the_setting_is_checked(settings):
    settings.MEMORYWEB_GATEWAY_TRACE_DAYS = 0
    found = [m for m in run_checks() if "MEMORYWEB_GATEWAY_TRACE_DAYS" in m.msg]
    assert found and found[0].id == "memoryweb.E011"
    settings.MEMORYWEB_GATEWAY_TRACE_DAYS = 7
    assert not [m for m in run_checks() if "MEMORYWEB_GATEWAY_TRACE_DAYS" in m.msg]


def test_registered_store_counts_and_erases(alpha):
    assert stores.get("gateway_traces") is traces.STORE
    kept = store(alpha, "The deploy key rotates every ninety days.", agent_id="agent-7")
    gone = store(alpha, "Lunch is at noon.", agent_id="agent-2")
    traces.record(trace(alpha, "metadata", memory_ids=(str(kept.pk),), agent_id="agent-7"))
    traces.record(trace(alpha, "metadata", memory_ids=(str(gone.pk),), agent_id="agent-7"))
    traces.record(trace(alpha, "content", memory_ids=(), injected=0, agent_id="agent-2"))
    assert traces.count(alpha) == 3 and traces.count(alpha, [gone.pk]) == 1
    traces.erase(alpha, [gone.pk])  # before the memory rows go, as erasure calls it
    assert traces.remaining(alpha, stores.Erased(ids=(str(gone.pk),))) == 0
    left = GatewayTrace.objects.get()
    assert left.memory_ids == [str(kept.pk)]  # agent-2's traces went with its memory


def test_namespace_deletion_drops_its_traces(alpha, system_admin):
    from apps.tenancy import namespaces
    from apps.tenancy.principal import Principal

    traces.record(trace(alpha, "metadata"))
    namespaces.delete(Principal.for_key(system_admin.key), "alpha")
    assert not GatewayTrace.objects.exists()


@pytest.fixture
def recorded(alpha, beta):
    return {"alpha": traces.record(trace(alpha, "content", model="alpha-model")),
            "beta": traces.record(trace(beta, "metadata", model="beta-model"))}


def test_list_is_scoped_and_read_only(alpha, beta, recorded):
    alice = person("alice", alpha)
    page = alice.get(LIST)
    assert page.status_code == 200
    assert b"alpha-model" in page.content and b"beta-model" not in page.content
    change = reverse("admin:gateway_gatewaytrace_change", args=[recorded["beta"].pk])
    assert b"beta-model" not in alice.get(change, follow=True).content
    assert alice.get(LIST + "add/").status_code == 403
    own = reverse("admin:gateway_gatewaytrace_change", args=[recorded["alpha"].pk])
    assert alice.post(own, {"model": "changed"}).status_code == 403
    assert alice.post(own.replace("change/", "delete/"), {"post": "yes"}).status_code == 403
    assert GatewayTrace.objects.count() == 2


def test_system_admin_sees_all_and_readers_nothing(alpha, beta, recorded):
    root = person("root", superuser=True)
    body = root.get(LIST).content
    assert b"alpha-model" in body and b"beta-model" in body
    from apps.core.roles import Role

    reader = person("rita", alpha, role=Role.READER)
    assert reader.get(LIST, follow=True).status_code == 403


def test_settings_page_links_the_traces(alpha):
    alice: Client = person("alice", alpha)
    body = alice.get(reverse("admin:gateway_settings", args=["alpha"])).content.decode()
    assert f"{LIST}?namespace={alpha.pk}" in body


def test_traces_past_retention_are_not_listed(alpha, recorded):
    GatewayTrace.objects.filter(pk=recorded["alpha"].pk).update(
        created_at=timezone.now() - timedelta(days=30))
    assert b"alpha-model" not in person("alice", alpha).get(LIST).content
