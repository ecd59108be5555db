"""Issue 23, item 6 (dashboard): the Encryption page (every namespace: encrypted or not,
key version, key age, last rotation, the KEK by id; deleted namespaces whose key is left;
shredded keys; the key store's problems) and the Erasure ledger page (newest first, 50 a
page, filtered by kind, the chain's verdict). System admins only: a team admin gets a 403
page that leads back, and the Tools list neither page for them."""

from __future__ import annotations

import base64
import json
import re

import pytest

from apps.core import erasure_ledger, key_providers, keystore, namespace_keys
from apps.core.roles import Role
from apps.tenancy.models import Namespace
from tests.helpers.people import person

ENCRYPTION = "/admin/dashboard/encryption/"
LEDGER = "/admin/dashboard/erasure-ledger/"
EMAIL = "dana.planted@example.com"



@pytest.fixture
def keyed(alpha, beta, key_store):
    """alpha encrypted and rotated, beta plain, a key left of a deleted namespace (9999),
    and a shredded one (8888)."""
    Namespace.objects.filter(pk=alpha.pk).update(encrypted=True)
    namespace_keys.create(alpha.pk, "alpha")
    namespace_keys.new_version(alpha.pk)
    namespace_keys.create(9999, "old-team")
    namespace_keys.create(8888, "shredded-team")
    namespace_keys.shred(8888)
    return alpha


def _row(page: str, namespace_id: int) -> str:
    found = re.search(rf'<tr class="mw-namespace-keys" data-namespace="{namespace_id}">(.*?)</tr>',
                      page, re.S)
    assert found, f"no row for namespace {namespace_id}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_the_encryption_page_lists_every_namespace_and_no_key_material(root, keyed, beta,
                                                                        key_store):
    response = root.get(ENCRYPTION)
    assert response.status_code == 200
    page = response.content.decode()
    kek_id = key_providers.provider(create=False).key_id()
    assert f'<code id="encryption-kek">{kek_id}</code>' in page
    assert "Key provider: <strong>file</strong>" in page
    alpha = _row(page, keyed.pk)
    assert alpha.startswith("alpha (id") and " yes " in f" {alpha} "
    assert "2 (2 versions)" in alpha and "0 days" in alpha and kek_id in alpha
    assert "never" not in alpha  # rotated
    plain = _row(page, beta.pk)
    assert " no " in f" {plain} " and "no data key" in plain
    gone = _row(page, 9999)
    assert "old-team" in gone and "deleted: only its key is left" in gone and "never" in gone
    shredded = re.search(r'<tr class="mw-shredded" data-namespace="8888">(.*?)</tr>', page, re.S)
    assert shredded and "shredded-team" in shredded.group(1)
    assert 'id="encryption-problems"' not in page
    kek = (key_store / key_providers.DEFAULT_KEK_FILE).read_bytes()
    stored = json.loads((key_store / namespace_keys.FILE_NAME).read_text())
    wrapped = [v["wrapped"] for e in stored["namespaces"].values() for v in e["keys"].values()]
    for secret in [base64.b64encode(kek).decode(), kek.hex(), *wrapped]:
        assert secret not in page


def test_the_encryption_page_shows_an_unreadable_key_store(root, alpha, key_store):
    key_store.mkdir(parents=True)
    (key_store / namespace_keys.FILE_NAME).write_text("[1, 2")
    response = root.get(ENCRYPTION)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="encryption-problems"' in page and "is not valid JSON" in page
    assert "none available" in page  # no KEK file: the provider's problem, shown
    assert " no " in f" {_row(page, alpha.pk)} "


@pytest.fixture
def ledger(alpha):
    selector = {"subject_id": keystore.keyed_hash("subject_id", json.dumps(EMAIL))}
    entries = [erasure_ledger.append("erasure", {
        "namespace": {"slug": "alpha", "id": alpha.pk}, "memories": [f"m-secret-{i}"],
        "selector": selector, "certificate_sha256": f"{i:064x}"}) for i in range(1, 56)]
    entries.append(erasure_ledger.append("namespace_deleted", {
        "namespace": {"slug": "gone", "id": 77}, "memories": []}))
    return entries


def _seqs(page: str) -> list[int]:
    return [int(seq) for seq in re.findall(r'<tr class="mw-ledger-entry" data-seq="(\d+)">', page)]


def test_the_ledger_page_is_newest_first_fifty_a_page(root, ledger):
    first = root.get(LEDGER).content.decode()
    assert _seqs(first) == list(range(56, 6, -1))
    assert "Hash chain intact" in first and "(56 entries)" in first
    assert 'id="ledger-pager"' in first and "Page 1 of 2" in first
    second = root.get(f"{LEDGER}?page=2").content.decode()
    assert _seqs(second) == list(range(6, 0, -1))
    erasures = root.get(f"{LEDGER}?kind=namespace_deleted").content.decode()
    assert _seqs(erasures) == [56] and "gone" in erasures
    for page in (first, second):
        assert EMAIL not in page and ledger[0]["selector"]["subject_id"] not in page
        assert "m-secret-1" not in page
    assert "subject_id" in second  # which field named the subject, not its value


def test_a_broken_ledger_is_shown_on_the_page(root, ledger, key_store):
    with (key_store / erasure_ledger.FILE_NAME).open("ab") as handle:
        handle.write(b"{broken\n")
    response = root.get(LEDGER)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="ledger-problem"' in page and "cannot be read" in page


def test_team_admins_get_a_403_and_the_tools_list_the_pages_for_system_admins(alice, root,
                                                                              keyed):
    for url, title in ((ENCRYPTION, "Encryption"), (LEDGER, "Erasure ledger")):
        response = alice.get(url)
        page = response.content.decode()
        assert response.status_code == 403, url
        assert f"{title} is for system admins." in page
        assert 'href="/admin/" id="system-only-home"' in page
        assert "old-team" not in page
    index = alice.get("/admin/").content.decode()
    assert ENCRYPTION not in index and LEDGER not in index
    index = root.get("/admin/").content.decode()
    assert f'href="{ENCRYPTION}"' in index and f'href="{LEDGER}"' in index


def test_people_without_a_dashboard_role_never_reach_the_pages(db, alpha, keyed):
    reader = person("rita", alpha, role=Role.READER)
    for url in (ENCRYPTION, LEDGER):
        response = reader.get(url)  # the admin's login redirect, then the no-access page
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        assert "old-team" not in reader.get(url, follow=True).content.decode()
