"""Issue 23, item 6 (REST): ``GET /api/v1/encryption`` and ``GET /api/v1/erasure-ledger``,
for system admins only. The encryption status names the provider, the current KEK by id,
each namespace's data key versions, dates and age, deleted namespaces whose key is left,
and the shredded keys; a key store that cannot be read is reported, never a 500. The
ledger pages newest first. Neither answer holds key material or a selector in clear."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.utils import timezone

from apps.core import erasure_ledger, key_providers, keystore, namespace_keys
from apps.tenancy.models import Namespace

STATUS = "/api/v1/encryption"
LEDGER = "/api/v1/erasure-ledger"
EMAIL = "dana.planted@example.com"



@pytest.fixture
def keyed(alpha, beta, key_store):
    """alpha encrypted and rotated once; beta's key shredded; a key left of namespace 9999,
    gone from SQL."""
    Namespace.objects.filter(pk=alpha.pk).update(encrypted=True)
    namespace_keys.create(alpha.pk, "alpha")
    namespace_keys.new_version(alpha.pk)
    namespace_keys.create(beta.pk, "beta")
    namespace_keys.shred(beta.pk)
    namespace_keys.create(9999, "old-team")
    return {"alpha": alpha, "beta": beta}


def _secrets(key_store) -> list[str]:
    """Every form of key material that must never reach an answer."""
    kek = (key_store / key_providers.DEFAULT_KEK_FILE).read_bytes()
    found = [base64.b64encode(kek).decode(), base64.urlsafe_b64encode(kek).decode(), kek.hex()]
    stored = json.loads((key_store / namespace_keys.FILE_NAME).read_text())
    for entry in stored["namespaces"].values():
        for version in entry["keys"].values():
            found.append(version["wrapped"])
    for namespace_id in stored["namespaces"]:
        key = namespace_keys.data_key(int(namespace_id))[1]
        found += [base64.b64encode(key).decode(), key.hex()]
    return found


def test_a_system_admin_sees_every_key_and_no_key_material(system_admin, keyed, key_store):
    response = system_admin.get(STATUS)
    assert response.status_code == 200, response.content
    body = response.json()
    kek_id = key_providers.provider(create=False).key_id()
    assert body["provider"] == "file" and body["kek_id"] == kek_id
    assert body["problems"] == []
    rows = {row["id"]: row for row in body["namespaces"]}
    assert set(rows) == {keyed["alpha"].pk, 9999}  # beta's key was shredded
    alpha = rows[keyed["alpha"].pk]
    assert alpha["slug"] == "alpha" and alpha["in_database"] and alpha["encrypted"]
    assert alpha["current_version"] == 2 and alpha["versions"] == 2
    assert alpha["version_numbers"] == [1, 2]
    assert alpha["rotated_at"] is not None and alpha["created_at"] is not None
    assert alpha["key_age_days"] == 0 and alpha["kek_ids"] == [kek_id]
    assert alpha["rewrap_needed"] is False
    gone = rows[9999]
    assert gone["slug"] == "old-team" and gone["in_database"] is False
    assert gone["encrypted"] is False and gone["rotated_at"] is None
    assert [(row["namespace_id"], row["slug"]) for row in body["shredded"]] == [
        (keyed["beta"].pk, "beta")]
    assert body["shredded"][0]["shredded_at"] is not None
    text = response.content.decode()
    for secret in _secrets(key_store):
        assert secret not in text


def test_the_key_age_counts_from_the_last_rotation(system_admin, alpha, key_store):
    namespace_keys.create(alpha.pk, "alpha")
    path = key_store / namespace_keys.FILE_NAME
    stored = json.loads(path.read_text())
    entry = stored["namespaces"][str(alpha.pk)]
    entry["created_at"] = (timezone.now() - dt.timedelta(days=400)).isoformat()
    entry["rotated_at"] = (timezone.now() - dt.timedelta(days=30, hours=1)).isoformat()
    keystore.write_file(namespace_keys.FILE_NAME, json.dumps(stored).encode())
    (row,) = system_admin.get(STATUS).json()["namespaces"]
    assert row["key_age_days"] == 30


@pytest.mark.parametrize("path", [STATUS, LEDGER])
def test_only_system_admins_may_look(callers, keyed, path):
    for who in ("reader", "agent", "admin", "outsider"):
        response = callers[who].get(path)
        assert response.status_code == 403, (who, response.content)
        assert response.json()["error"]["code"] == "permission_denied"
        assert "alpha" not in response.content.decode()
    assert callers["anonymous"].get(path).status_code == 401
    assert callers["system"].get(path).status_code == 200


def test_an_unreadable_key_file_is_reported_not_a_500(system_admin, alpha, key_store):
    key_store.mkdir(parents=True)
    (key_store / namespace_keys.FILE_NAME).write_text("{not json")
    response = system_admin.get(STATUS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["namespaces"] == [] and body["kek_id"] is None  # no KEK file either
    assert any("is not valid JSON" in problem for problem in body["problems"])
    assert any("key-encryption key file" in problem for problem in body["problems"])


def test_a_key_that_does_not_unwrap_is_reported(system_admin, alpha, key_store):
    namespace_keys.create(alpha.pk, "alpha")
    keystore.write_private(key_store / key_providers.DEFAULT_KEK_FILE, b"\x01" * 32)  # another KEK
    namespace_keys.forget_all()
    body = system_admin.get(STATUS).json()
    (row,) = body["namespaces"]
    assert row["rewrap_needed"] is True and body["kek_id"] != row["kek_ids"][0]
    assert any(f"namespace {alpha.pk} (alpha) key version 1" in problem
               for problem in body["problems"])


def test_an_encrypted_namespace_without_a_key_is_a_problem(system_admin, alpha, key_store):
    Namespace.objects.filter(pk=alpha.pk).update(encrypted=True)
    body = system_admin.get(STATUS).json()
    assert body["namespaces"] == []
    assert any("namespace alpha" in problem and "no data key" in problem
               for problem in body["problems"])


# --- the erasure ledger -------------------------------------------------------------------

def _append(kind: str, slug: str, namespace_id: int, **fields) -> dict:
    return erasure_ledger.append(kind, {"namespace": {"slug": slug, "id": namespace_id},
                                        "memories": fields.pop("memories", []), **fields})


@pytest.fixture
def ledger(alpha, key_store) -> list[dict]:
    selector = {"subject_id": keystore.keyed_hash("subject_id", json.dumps(EMAIL))}
    return [
        _append("erasure", "alpha", alpha.pk, memories=["m-secret-1", "m-secret-2"],
                selector=selector, request="req-1", certificate_sha256="c" * 64,
                audit={"seq": 7, "entry_hash": "a" * 64}),
        _append("retention", "alpha", alpha.pk, memories=["m-old"], selector={}),
        _append("namespace_deleted", "gone", 77, memories=["m-gone"]),
        _append("erasure", "alpha", alpha.pk, memories=["m-3"], selector=selector),
        _append("erasure", "beta", 2, memories=[], selector=selector),
    ]


def test_the_ledger_pages_newest_first_without_selectors_or_ids(system_admin, ledger):
    first = system_admin.get(f"{LEDGER}?limit=2").json()
    assert first["count"] == 5 and first["previous"] is None and first["next"]
    assert [entry["seq"] for entry in first["results"]] == [5, 4]
    second = system_admin.get(f"{LEDGER}?limit=2&offset=2").json()
    assert [entry["seq"] for entry in second["results"]] == [3, 2]
    last = system_admin.get(f"{LEDGER}?limit=2&offset=4").json()
    assert [entry["seq"] for entry in last["results"]] == [1] and last["next"] is None
    (oldest,) = last["results"]
    assert oldest == {
        "seq": 1, "id": ledger[0]["id"], "at": oldest["at"], "kind": "erasure",
        "namespace_slug": "alpha", "namespace_id": ledger[0]["namespace"]["id"],
        "memories": 2, "selector_fields": ["subject_id"], "through": None,
        "request": "req-1", "certificate_sha256": "c" * 64, "audit_seq": 7,
        "hash": ledger[0]["hash"]}
    text = json.dumps([first, second, last])
    for hidden in (EMAIL, ledger[0]["selector"]["subject_id"], "m-secret-1", "m-gone"):
        assert hidden not in text


def test_the_ledger_filters_by_kind_time_and_namespace(system_admin, ledger):
    def seqs(query: str) -> list[int]:
        response = system_admin.get(f"{LEDGER}?{query}")
        assert response.status_code == 200, response.content
        return [entry["seq"] for entry in response.json()["results"]]

    assert seqs("kind=erasure") == [5, 4, 1]
    assert seqs("kind=namespace_deleted") == [3]
    assert seqs("namespace=alpha") == [4, 2, 1]
    assert seqs("namespace=gone") == [3]
    assert seqs("since=2000-01-01T00:00:00Z") == [5, 4, 3, 2, 1]
    assert seqs("since=2999-01-01T00:00:00%2B05:00") == []
    assert seqs("since=0001-01-01T00:00:00%2B05:00") == [5, 4, 3, 2, 1]  # the calendar's edge


@pytest.mark.parametrize(("query", "field"), [("kind=shredding", "kind"), ("since=yesterday", "since"),
                                              ("offset=-1", "offset"), ("who=dana", "who")])
def test_bad_ledger_queries_are_400_naming_the_field(system_admin, ledger, query, field):
    response = system_admin.get(f"{LEDGER}?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


def test_an_unreadable_ledger_is_503_naming_the_file(system_admin, ledger, key_store):
    with (key_store / erasure_ledger.FILE_NAME).open("ab") as handle:
        handle.write(b"not json\n")
    response = system_admin.get(LEDGER)
    assert response.status_code == 503, response.content
    assert erasure_ledger.FILE_NAME in response.json()["error"]["message"]


def test_an_empty_ledger_is_an_empty_page(system_admin, key_store):
    assert system_admin.get(LEDGER).json() == {"count": 0, "next": None, "previous": None,
                                                 "results": []}
