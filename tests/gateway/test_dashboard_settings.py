"""The dashboard's per-namespace gateway settings page (apps/gateway/admin_settings.py):
memory mode and trace level for team admins, upstreams for system admins only (shown
read-only to team admins: the key file's name, never the key), the learning counts, and
every change through ``namespaces.update`` (validated, audited)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.gateway import facts
from apps.gateway.models import FactState, LearnedFact, PendingExchange
from apps.tenancy.members import set_role
from apps.tenancy.models import Namespace
from tests.helpers.people import person

SECRET = "sk-test-never-shown-0123456789"


@pytest.fixture
def key_dir(settings, tmp_path):
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "alpha-openai.key").write_text(SECRET)
    settings.MEMORYWEB_GATEWAY_KEY_DIR = str(directory)
    return directory


def url(slug: str = "alpha") -> str:
    return reverse("admin:gateway_settings", args=[slug])


def form(**changes) -> dict:
    data = {"mode": "full", "allow_client_control": "on", "after": "", "trace": "off"}
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def stored(slug: str = "alpha") -> Namespace:
    return Namespace.objects.get(slug=slug)


def test_page_shows_settings_and_counts(alice, alpha, agent):
    for text, state in (("a", FactState.QUARANTINED), ("b", FactState.QUARANTINED),
                        ("c", FactState.PROMOTED), ("d", FactState.REJECTED)):
        LearnedFact.objects.create(namespace=alpha, api_key=agent.key, agent_id="agent-1",
                                   text=f"Fact {text}.", key=facts.key(f"Fact {text}."),
                                   state=state)
    PendingExchange.objects.create(namespace=alpha, api_key=agent.key, agent_id="agent-1",
                                   api="chat", user_text="hello")
    page = alice.get(url())
    assert page.status_code == 200
    body = page.content.decode()
    for name, count in (("quarantined", 2), ("promoted", 1), ("rejected", 1), ("pending", 1)):
        assert re.search(rf'id="count-{name}">(?:<a [^>]*>)?(\d+)<', body)[1] == str(count)
    review = reverse("admin:gateway_learnedfact_changelist") + f"?namespace={alpha.pk}&amp;state=quarantined"
    assert review in body
    assert alice.get(reverse("admin:gateway_settings_index")).status_code == 200
    assert b"alpha" in alice.get(reverse("admin:gateway_settings_index")).content


def test_team_admin_changes_mode_and_trace(alice, alpha):
    answer = alice.post(url(), form(mode="readonly", allow_client_control=None, trace="metadata"))
    assert answer.status_code == 302
    namespace = stored()
    assert namespace.memory_mode == {"default": "readonly", "allow_client_control": False}
    assert namespace.gateway == {"trace": "metadata"}
    entry = AuditEntry.objects.filter(operation="namespace.update").latest("pk")
    assert entry.summary == {"fields": ["gateway", "memory_mode"]}


def test_unchanged_form_writes_nothing(alice, alpha):
    before = AuditEntry.objects.count()
    alice.post(url(), form())
    assert AuditEntry.objects.count() == before
    assert stored().memory_mode == {} and stored().gateway == {}


def test_service_refusal_is_shown_and_nothing_saved(alice, alpha):
    answer = alice.post(url(), form(mode="after"))  # after needs a date
    assert answer.status_code == 400
    assert b"after" in answer.content and b"errorlist" in answer.content
    assert stored().memory_mode == {}


def test_get_never_writes(alice, alpha):
    before = AuditEntry.objects.count()
    alice.get(url(), form(mode="off", trace="content"))
    assert AuditEntry.objects.count() == before and stored().gateway == {}


def test_team_admin_sees_upstreams_read_only_and_cannot_change_them(alice, alpha, key_dir):
    namespaces_update_as_system(alpha, {"upstreams": {"openai": {
        "url": "https://llm.example.org/v1", "key_file": "alpha-openai.key"}}})
    page = alice.get(url()).content.decode()
    assert "https://llm.example.org/v1" in page and "alpha-openai.key" in page
    assert SECRET not in page
    assert "disabled" in re.search(r'<input[^>]*name="openai_url"[^>]*>', page)[0]
    # A posted upstream is ignored (the field is disabled); the trace still changes.
    alice.post(url(), form(trace="content", openai_url="https://evil.example.org/v1",
                           openai_key_file="other.key"))
    assert stored().gateway == {"trace": "content", "upstreams": {"openai": {
        "url": "https://llm.example.org/v1", "key_file": "alpha-openai.key"}}}


def namespaces_update_as_system(namespace, gateway: dict) -> None:
    from apps.tenancy import namespaces
    from tests.helpers.callers import make_caller

    system = make_caller(Role.SYSTEM, None, "root-key")
    from apps.tenancy.principal import Principal

    namespaces.update(Principal.for_key(system.key), namespace.slug, {"gateway": gateway})


def test_system_admin_changes_upstreams(root, alpha, key_dir):
    answer = root.post(url(), form(openai_url="https://llm.example.org/v1/",
                                   openai_key_file="alpha-openai.key"))
    assert answer.status_code == 302
    assert stored().gateway == {"upstreams": {"openai": {
        "url": "https://llm.example.org/v1", "key_file": "alpha-openai.key"}}}
    refused = root.post(url(), form(openai_key_file="../secret"))
    assert refused.status_code == 400 and b"key_file" in refused.content
    assert stored().gateway["upstreams"]["openai"]["key_file"] == "alpha-openai.key"


def test_another_tenant_and_readers_get_nothing(alpha, beta):
    bob = person("bob", beta)
    assert bob.get(url("alpha")).status_code == 404
    assert bob.post(url("alpha"), form(trace="content")).status_code == 404
    assert b"alpha" not in bob.get(reverse("admin:gateway_settings_index")).content
    set_role(alpha, get_user_model().objects.get(username="bob"), Role.READER)
    assert bob.get(url("alpha")).status_code == 404  # reads alpha, manages only beta
    reader = person("rita", alpha, role=Role.READER)
    assert reader.get(url("alpha"), follow=True).status_code == 403
    assert stored().gateway == {}


def test_settings_need_csrf(alpha):
    person("carol", alpha)
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="carol", password="pw")
    assert strict.post(url(), form(trace="content")).status_code == 403
    assert stored().gateway == {}


def test_navigation_lists_gateway_settings(alice, alpha, beta):
    index = alice.get("/admin/").content.decode()
    entry = reverse("admin:gateway_namespacegatewaysettings_changelist")
    assert entry in index and "Gateway settings" in index
    assert alice.get(entry)["Location"] == reverse("admin:gateway_settings_index")
    own = reverse("admin:gateway_namespacegatewaysettings_change", args=[alpha.pk])
    assert alice.get(own)["Location"] == url("alpha")
    other = reverse("admin:gateway_namespacegatewaysettings_change", args=[beta.pk])
    assert alice.get(other).status_code == 404
