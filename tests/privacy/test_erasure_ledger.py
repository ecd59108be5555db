"""The erasure ledger (docs/privacy.md#backups-and-erasure): every executed erasure,
retention expiry and namespace deletion appends one hash-chained entry to a file in the
key store, outside the data directory; selectors only as keyed hashes; a ledger that
cannot be written fails the change before it commits; tampering shows."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.utils import timezone

from apps.core import erasure_ledger, keystore
from apps.core.checks import TAG
from apps.memories.models import Memory
from apps.privacy import ledger
from apps.privacy.models import ErasureRequest
from tests.helpers.erasure import REQUESTS, erase_through_requests

#: Commits for real: the ledger is appended inside the certificate's transaction.
pytestmark = pytest.mark.django_db(transaction=True)
EMAIL = "dana.planted@example.com"


@pytest.fixture(autouse=True)
def keystore_dir(settings, tmp_path):
    """A key store of this test's own, beside (not inside) the data directory."""
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "keystore"
    return settings.MEMORYWEB_KEYSTORE_DIR


@pytest.fixture
def dana(stored):
    """Two memories about a person named by email, one about someone else."""
    ids = [stored(f"Dana prefers tea, note {i}.", metadata={"subject_id": EMAIL})["id"]
           for i in range(2)]
    return {"ids": ids, "other": stored("The office closes at six.")["id"]}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_erasure_appends_one_entry_without_the_selector_in_clear(
        team_admin, system_admin, dana, keystore_dir):
    certificate = erase_through_requests(team_admin, system_admin, {"subject_id": EMAIL})
    path = keystore_dir / erasure_ledger.FILE_NAME
    (entry,) = _lines(path)
    assert entry["kind"] == "erasure" and entry["seq"] == 1
    assert entry["namespace"] == {"slug": "alpha", "id": certificate["namespace"]["id"]}
    assert sorted(entry["memories"]) == sorted(dana["ids"])
    assert entry["certificate_sha256"] == certificate["certificate_sha256"]
    assert entry["audit"] == certificate["audit"]  # the change's audit entry
    assert entry["request"] == certificate["request"]
    # The person's email never reaches the ledger: a keyed hash, the same for the same value.
    assert EMAIL.encode() not in path.read_bytes() and b"dana" not in path.read_bytes().lower()
    assert entry["selector"] == {"subject_id": keystore.keyed_hash("subject_id", json.dumps(EMAIL))}
    assert entry["selector"]["subject_id"].startswith("hmac-sha256:")
    # Private: the directory 0700, every file in it 0600.
    assert stat.S_IMODE(keystore_dir.stat().st_mode) == 0o700
    for file in keystore_dir.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert erasure_ledger.verify().ok
    assert ledger.pending() == []  # this database includes it


def test_retention_and_namespace_deletion_append_their_kinds(
        team_admin, system_admin, alpha, stored, keystore_dir):
    old = stored("an old note")["id"]
    Memory.objects.filter(pk=old).update(created_at=timezone.now() - dt.timedelta(days=40))
    assert team_admin.patch("/api/v1/namespaces/alpha", {"retention_days": 30}).status_code == 200
    call_command("expire_memories")
    kept = stored("still here")["id"]
    assert system_admin.delete("/api/v1/namespaces/alpha").status_code == 204
    retention, deleted = _lines(keystore_dir / erasure_ledger.FILE_NAME)
    assert retention["kind"] == "retention" and retention["memories"] == [old]
    assert retention["certificate_sha256"] == ErasureRequest.objects.get().certificate_sha256
    assert deleted["kind"] == "namespace_deleted" and deleted["memories"] == [kept]
    assert deleted["namespace"]["slug"] == "alpha" and deleted["prev"] == retention["hash"]
    assert erasure_ledger.verify() == erasure_ledger.Verdict(True, 2, None, deleted["hash"])


def test_a_ledger_that_cannot_be_written_fails_the_erasure_before_it_is_certified(
        team_admin, system_admin, dana, keystore_dir):
    keystore_dir.parent.mkdir(exist_ok=True)
    keystore_dir.write_text("not a directory")  # the key store is broken
    created = team_admin.post(REQUESTS, {"subject_id": EMAIL, "reason": "ticket 9"}).json()
    assert team_admin.post(f"{REQUESTS}/{created['id']}/approve").status_code == 200
    failed = system_admin.post(f"{REQUESTS}/{created['id']}/execute")
    assert failed.status_code == 503, failed.content
    assert "erasure ledger" in failed.json()["error"]["message"]
    request = ErasureRequest.objects.get(pk=created["id"])
    assert request.state == "executing" and not request.certificate_sha256  # not certified
    keystore_dir.unlink()  # fixed: the retried execute certifies and appends
    done = system_admin.post(f"{REQUESTS}/{created['id']}/execute")
    assert done.status_code == 200 and done.json()["state"] == "executed"
    (entry,) = _lines(keystore_dir / erasure_ledger.FILE_NAME)
    assert entry["certificate_sha256"] == done.json()["certificate"]["certificate_sha256"]


def test_a_ledger_that_cannot_be_written_fails_a_namespace_deletion(system_admin, alpha, stored,
                                                                    keystore_dir):
    stored("a note")
    keystore_dir.parent.mkdir(exist_ok=True)
    keystore_dir.write_text("not a directory")  # the key store is broken
    response = system_admin.delete("/api/v1/namespaces/alpha")
    assert response.status_code == 503 and "erasure ledger" in response.json()["error"]["message"]
    assert Memory.objects.filter(namespace=alpha).count() == 1  # rolled back, not deleted
    keystore_dir.unlink()
    assert system_admin.delete("/api/v1/namespaces/alpha").status_code == 204
    (entry,) = _lines(keystore_dir / erasure_ledger.FILE_NAME)
    assert entry["kind"] == "namespace_deleted"


def test_tampering_shows(team_admin, system_admin, stored, keystore_dir):
    for i in range(3):
        erase_through_requests(team_admin, system_admin,
                               {"ids": [stored(f"note {i}")["id"]]})
    path = keystore_dir / erasure_ledger.FILE_NAME
    original = path.read_text().splitlines(keepends=True)
    assert erasure_ledger.verify().ok

    edited = json.loads(original[1])
    edited["memories"] = ["00000000-0000-0000-0000-000000000000"]
    path.write_text(original[0] + json.dumps(edited) + "\n" + original[2])
    assert erasure_ledger.verify().broken == (2, "entry 2's content does not match its hash (altered)")

    edited["hash"] = erasure_ledger.entry_hash(edited)  # hash recomputed: the next link breaks
    path.write_text(original[0] + json.dumps(edited) + "\n" + original[2])
    assert erasure_ledger.verify().broken == (3, "entry 3's prev does not match entry 2's hash")

    path.write_text(original[0] + original[2])  # an entry removed
    assert erasure_ledger.verify().broken == (2, "entry 2 is missing (found seq 3)")


def test_a_torn_last_line_is_cut_by_the_next_append(keystore_dir):
    first = erasure_ledger.append("erasure", {"namespace": {"slug": "x", "id": 1}, "memories": []})
    path = keystore_dir / erasure_ledger.FILE_NAME
    with path.open("a") as handle:
        handle.write('{"seq": 2, "kind": "era')  # a writer died mid-append
    assert [e["seq"] for e in erasure_ledger.entries()] == [1]
    second = erasure_ledger.append("erasure", {"namespace": {"slug": "x", "id": 1}, "memories": []})
    assert second["seq"] == 2 and second["prev"] == first["hash"]
    assert erasure_ledger.verify().ok


def test_concurrent_appends_make_one_gapless_chain(keystore_dir):
    def appender(n: int) -> None:
        for i in range(20):
            erasure_ledger.append("erasure", {"namespace": {"slug": f"t{n}", "id": i},
                                              "memories": []})

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = erasure_ledger.verify()
    assert verdict.ok and verdict.entries == 120


def test_a_key_store_inside_the_data_directory_is_refused(settings):
    settings.MEMORYWEB_KEYSTORE_DIR = settings.DATA_DIR / "keys"
    errors = [m for m in run_checks(tags=[TAG]) if m.id == "memoryweb.E012"]
    assert len(errors) == 1 and "inside MEMORYWEB_DATA_DIR" in errors[0].msg
    with pytest.raises(keystore.KeystoreError):
        keystore.ensure()


def test_only_this_databases_history_is_replayed_and_the_check_says_so(
        team_admin, system_admin, alpha, stored):
    kept = stored("Dana's note to erase by replay.")["id"]
    erase_through_requests(team_admin, system_admin, {"ids": [stored("a note")["id"]]})
    assert ledger.pending() == [] and ledger.check_ledger_position() == []
    # Another database's history (a data directory started afresh beside this key store):
    # its namespace 1 is not ours, so its deletion is never applied here.
    erasure_ledger.append("namespace_deleted", {
        "namespace": {"slug": "alpha", "id": alpha.pk}, "memories": [],
        "audit": {"seq": 10_000, "entry_hash": "0" * 64}, "origin": "another history"})
    assert ledger.pending() == [] and ledger.check_ledger_position() == []
    # One of ours this database does not include (it was put back from an older copy).
    mine = erasure_ledger.append("erasure", {
        "namespace": {"slug": "alpha", "id": alpha.pk}, "memories": [kept],
        "audit": {"seq": 10_001, "entry_hash": "1" * 64}, "origin": ledger.origin()})
    assert [entry["seq"] for entry in ledger.pending()] == [mine["seq"]]
    (error,) = ledger.check_ledger_position()
    assert error.id == "memoryweb.E013" and "behind the erasure ledger" in error.msg
    (done,) = ledger.replay(ledger.pending())
    assert (done.seq, done.kind, done.erased) == (mine["seq"], "erasure", 1)
    assert not Memory.objects.filter(pk=kept).exists()
    assert ledger.pending() == [] and ledger.check_ledger_position() == []
    assert alpha.__class__.objects.filter(pk=alpha.pk).exists()  # the other history's: not applied
