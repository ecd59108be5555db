"""The admin edits memories through the service layer: versions, index and all."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages

from apps.memories.models import Memory
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import ApiKey
from apps.tenancy.services import authenticate_key
from tests.helpers.admin_forms import memory_form
from tests.helpers.world_state import collection_names


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    return client


def test_changelist_and_search(admin_client, stored):
    stored("The wifi password is on the fridge")
    stored("Lunch is at noon")
    response = admin_client.get("/admin/memories/memory/?q=wifi")
    assert response.status_code == 200
    assert b"wifi password" in response.content
    assert b"Lunch is at noon" not in response.content


def test_edit_in_admin_goes_through_service(admin_client, stored, agent, alpha):
    memory = Memory.objects.get(pk=stored("Standup is at 9:00", tags=["a"])["id"])
    response = admin_client.post(f"/admin/memories/memory/{memory.pk}/change/",
                                 memory_form(memory, content="Standup is at 9:30"))
    assert response.status_code == 302, response.content
    memory.refresh_from_db()
    assert memory.content == "Standup is at 9:30"
    assert memory.version == 2
    version = memory.versions.get()
    assert version.changed_by == "user:root"
    assert version.changes["content"]["before"] == "Standup is at 9:00"
    top = agent.post("/api/v1/recall", {"query": "Standup is at 9:30", "k": 1,
                                        "mode": "vector"}).json()["results"][0]
    assert top["id"] == str(memory.pk) and top["score"] > 0.99  # re-embedded


def test_delete_in_admin_removes_vector(admin_client, stored, alpha):
    memory = stored("Temporary note")
    response = admin_client.post(f"/admin/memories/memory/{memory['id']}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Memory.objects.filter(pk=memory["id"]).exists()
    assert memory["id"] not in get_vector_store().all_ids(alpha)


def test_add_api_key_in_admin_shows_secret_once(admin_client, alpha):
    response = admin_client.post("/admin/tenancy/apikey/add/", {
        "namespace": alpha.pk, "role": "agent", "agent_id": "from-admin", "name": "ui",
        "expires_at_0": "", "expires_at_1": "", "revoked_at_0": "", "revoked_at_1": "",
    })
    assert response.status_code == 302, response.content
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    raw = next(m.split(": ")[-1] for m in messages if "not shown again" in m)
    key = ApiKey.objects.get(agent_id="from-admin")
    assert authenticate_key(raw).pk == key.pk
    assert raw in admin_client.get("/admin/tenancy/apikey/").content.decode()  # shown once...
    assert raw not in admin_client.get("/admin/tenancy/apikey/").content.decode()  # ...and never again
    assert raw not in admin_client.get(f"/admin/tenancy/apikey/{key.pk}/change/").content.decode()


def test_non_staff_cannot_open_admin(client, db):
    get_user_model().objects.create_user("eve", password="pw")
    client.login(username="eve", password="pw")
    assert client.get("/admin/memories/memory/").status_code == 302


def test_deleting_namespace_in_admin_drops_its_collection(admin_client, stored, alpha):
    stored("soon gone")
    name = get_vector_store().collection_name(alpha)
    assert name in collection_names(get_vector_store())  # Chroma's or the small index's
    response = admin_client.post(f"/admin/tenancy/namespace/{alpha.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Memory.objects.exists()
    assert name not in collection_names(get_vector_store())


def test_staff_without_superuser_sees_no_tenant_data(client, db, stored):
    from django.contrib.auth.models import Permission

    stored("a secret of alpha")
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=[
        "view_memory", "change_memory", "add_apikey", "view_namespace"]))
    client.login(username="staff", password="pw")
    # is_staff and model permissions open nothing: the dashboard is for namespace roles.
    for url in ("/admin/", "/admin/memories/memory/", "/admin/tenancy/apikey/add/"):
        response = client.get(url, follow=True)
        assert response.status_code == 403, url
        assert b"a secret of alpha" not in response.content


def test_invalid_edit_in_admin_shows_on_the_form(admin_client, stored):
    memory = Memory.objects.get(pk=stored("short")["id"])
    response = admin_client.post(f"/admin/memories/memory/{memory.pk}/change/",
                                 memory_form(memory, content="x" * 40_000))
    assert response.status_code == 200
    assert b"limit is 32768" in response.content
    memory.refresh_from_db()
    assert memory.content == "short" and memory.version == 1


def test_system_key_with_namespace_is_refused_in_admin(admin_client, alpha):
    response = admin_client.post("/admin/tenancy/apikey/add/", {
        "namespace": alpha.pk, "role": "system", "agent_id": "root2", "name": "",
        "expires_at_0": "", "expires_at_1": "", "revoked_at_0": "", "revoked_at_1": "",
    })
    assert response.status_code == 200
    assert not ApiKey.objects.filter(agent_id="root2").exists()


def test_bulk_delete_action_goes_through_the_service_in_one_go(admin_client, stored, alpha):
    ids = [stored(f"bulk note {i}")["id"] for i in range(3)]
    keep = stored("keep me")["id"]
    response = admin_client.post("/admin/memories/memory/", {
        "action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert response.status_code == 302
    assert [str(pk) for pk in Memory.objects.values_list("pk", flat=True)] == [keep]
    assert get_vector_store().all_ids(alpha) == {keep}


def test_namespace_recall_settings_are_edited_and_validated_in_admin(admin_client, alpha):
    url = f"/admin/tenancy/namespace/{alpha.pk}/change/"
    form = {"slug": "alpha", "name": "Team Alpha", "near_duplicate_policy": "skip",
            "near_duplicate_threshold": "0.9", "recall_defaults": '{"mode": "hybrid", "mmr_lambda": 2}'}
    response = admin_client.post(url, form)
    assert response.status_code == 200 and b"mmr_lambda" in response.content
    alpha.refresh_from_db()
    assert alpha.recall_defaults == {} and alpha.near_duplicate_policy == "link"
    response = admin_client.post(url, {**form, "recall_defaults": '{"mode": "hybrid", "mmr_lambda": 0.7}'})
    assert response.status_code == 302
    alpha.refresh_from_db()
    assert alpha.recall_defaults == {"mode": "hybrid", "mmr_lambda": 0.7}
    assert alpha.near_duplicate_policy == "skip" and alpha.near_duplicate_threshold == 0.9


def test_rotate_action_in_admin_shows_the_new_secret_once(admin_client, alpha):
    from apps.core.roles import Role
    from apps.tenancy.models import ApiKey
    from apps.tenancy.services import create_api_key

    key, raw = create_api_key(role=Role.AGENT, agent_id="rotor", namespace=alpha)
    response = admin_client.post("/admin/tenancy/apikey/", {
        "action": "rotate", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    new = ApiKey.objects.filter(agent_id="rotor").exclude(pk=key.pk).get()
    secret = next(t for t in texts if "rotated" in t).split("shown again: ")[1].split(" ")[0]
    assert secret.startswith(new.prefix) and authenticate_key(secret).pk == new.pk
    assert authenticate_key(raw).pk == key.pk  # still inside the grace period
    assert ApiKey.objects.get(pk=key.pk).expires_at is not None


def test_deeply_nested_json_in_the_admin_is_a_form_error(admin_client, stored, alpha):
    """Metadata and recall settings nested past MEMORYWEB_MAX_JSON_DEPTH are refused on the
    form (json.loads raised RecursionError: a 500) and change nothing."""
    deep = "[" * 5000 + "]" * 5000
    memory = Memory.objects.get(pk=stored("short")["id"])
    response = admin_client.post(f"/admin/memories/memory/{memory.pk}/change/",
                                 memory_form(memory, metadata='{"a": ' + deep + "}"))
    assert response.status_code == 200 and b"nested deeper than" in response.content
    memory.refresh_from_db()
    assert memory.metadata == {} and memory.version == 1
    response = admin_client.post(f"/admin/tenancy/namespace/{alpha.pk}/change/", {
        "slug": "alpha", "name": "Team Alpha", "near_duplicate_policy": "link",
        "near_duplicate_threshold": "0.9", "recall_defaults": deep})
    assert response.status_code == 200 and b"nested deeper than" in response.content
    alpha.refresh_from_db()
    assert alpha.recall_defaults == {}
