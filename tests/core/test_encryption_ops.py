"""Encryption at rest's operations (issue 23, docs/encryption.md): crypto-shredding when a
namespace is deleted (also by a restore's ledger replay), key material kept out of data
backups and backed up on its own under a passphrase (``backup --keys-to``, ``restore
--keys-from``), and ``rotate_keys`` for the KEK and for one namespace's data key."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from apps.audit.models import AuditEntry
from apps.core import erasure_ledger, key_backup, key_providers, namespace_keys
from apps.core.key_providers import KeyUnavailable, LocalKeys
from apps.core.roles import Role
from apps.privacy import ledger
from apps.tenancy.models import Namespace
from apps.tenancy.namespaces import delete_namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_namespace
from tests.helpers.backup import manage_process, set_up_demo
from tests.helpers.callers import make_caller

#: Deletions commit for real: the key is shredded on commit, never before.
pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Principal(label="system:test", agent_id="", role=Role.SYSTEM)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def key_store(key_store, monkeypatch):
    """The test's own key store (tests/conftest.py), and no passphrase in the environment
    unless the test sets one."""
    monkeypatch.delenv("MEMORYWEB_KEYS_PASSPHRASE", raising=False)
    return key_store


@pytest.fixture
def keyed(alpha) -> Namespace:
    """alpha with a data key in the key store."""
    namespace_keys.create(alpha.pk, alpha.slug)
    return alpha


def _destroyed(namespace_id: int) -> bool:
    with pytest.raises(KeyUnavailable) as failure:
        namespace_keys.data_key(namespace_id)
    return "destroyed" in str(failure.value)


# --- crypto-shredding on deletion ----------------------------------------------------------

def test_deleting_a_namespace_shreds_its_key_once_committed(keyed, beta):
    namespace_keys.create(beta.pk, beta.slug)
    pk = keyed.pk
    delete_namespace(ROOT, keyed)
    assert not namespace_keys.has_key(pk) and _destroyed(pk)
    assert namespace_keys.has_key(beta.pk)  # only its own key
    assert not Namespace.objects.filter(pk=pk).exists()


def test_a_rolled_back_deletion_keeps_the_key(keyed):
    pk = keyed.pk
    _, key = namespace_keys.data_key(pk)
    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        delete_namespace(ROOT, keyed)
        assert namespace_keys.has_key(pk)  # not before the commit
        raise RuntimeError("rolled back")
    assert Namespace.objects.filter(pk=pk).exists()
    namespace_keys.forget_all()
    assert namespace_keys.data_key(pk) == (1, key)


def test_deleting_a_namespace_without_a_key_writes_no_key_file(alpha, key_store):
    delete_namespace(ROOT, alpha)
    assert not (key_store / namespace_keys.FILE_NAME).exists()


def _restored_row(pk: int, slug: str) -> Namespace:
    """The namespace's row as a restore of an older backup brings it back."""
    return Namespace.objects.create(pk=pk, slug=slug, name=slug)


def test_a_replayed_deletion_keeps_a_shredded_key_shredded_and_shreds_a_restored_one(keyed):
    pk, slug = keyed.pk, keyed.slug
    delete_namespace(ROOT, keyed)  # appends the ledger entry, shreds the key
    (entry,) = erasure_ledger.entries()
    assert entry["kind"] == "namespace_deleted"

    _restored_row(pk, slug)  # an older backup restored: the namespace is back, its key is not
    (replayed,) = ledger.replay([entry], after_commit=False)
    assert replayed.kind == "namespace_deleted" and not Namespace.objects.filter(pk=pk).exists()
    assert _destroyed(pk)

    # The key store lost and a key put back for it (no shredded record): the replay shreds.
    _restored_row(pk, slug)
    namespace_keys.create(pk, slug)
    ledger.replay([entry], after_commit=False)
    assert not namespace_keys.has_key(pk) and _destroyed(pk)


def test_a_replay_deletes_a_restored_encrypted_namespace_whose_key_is_gone():
    """Backup, delete, restore: the restored rows are ciphertext under a shredded key; the
    replay deletes them without needing the key, and nothing of them can be read."""
    vault = create_namespace("vault", encrypted=True)
    writer = make_caller(Role.AGENT, vault, "agent-v")
    response = writer.post("/api/v1/memories", {"namespace": "vault",
                                                "content": "The safe's code is 4711."})
    assert response.status_code == 201, response.content
    pk = vault.pk
    namespace_keys.shred(pk)  # deleted after the backup: the key is gone, the rows are back
    namespace_keys.forget_all()
    assert writer.get("/api/v1/memories", {"namespace": "vault"}).status_code == 503
    entry = erasure_ledger.append("namespace_deleted", {
        "namespace": {"slug": "vault", "id": pk}, "memories": [response.json()["id"]]})
    (replayed,) = ledger.replay([entry], after_commit=False)
    assert replayed.erased == 1 and not Namespace.objects.filter(pk=pk).exists()
    assert _destroyed(pk)


# --- key backups -------------------------------------------------------------------------

def _passphrase_file(tmp_path: Path, passphrase: str = PASSPHRASE) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(passphrase + "\n")
    return path


def _backup_keys(tmp_path: Path, **options) -> Path:
    target = tmp_path / "keys.mwkeys"
    out = io.StringIO()
    call_command("backup", keys_to=target, stdout=out, **options)
    assert "key backup of" in out.getvalue()
    return target


def _restore_keys(source: Path, **options) -> str:
    out = io.StringIO()
    call_command("restore", keys_from=source, stdout=out, **options)
    return out.getvalue()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_key_backup_is_sealed_and_restores_the_keys_into_a_lost_key_store(
        keyed, key_store, tmp_path, settings, monkeypatch):
    pk = keyed.pk
    _, key = namespace_keys.data_key(pk)
    kek = (key_store / key_providers.DEFAULT_KEK_FILE).read_bytes()
    monkeypatch.setenv("MEMORYWEB_KEYS_PASSPHRASE", PASSPHRASE)
    backup = _backup_keys(tmp_path)
    sealed = backup.read_bytes()
    assert sealed.startswith(key_backup.MAGIC) and oct(backup.stat().st_mode & 0o777) == "0o600"
    wrapped = json.loads((key_store / namespace_keys.FILE_NAME).read_text())
    for secret in (kek, base64.b64encode(kek), key, base64.b64encode(key), b"alpha",
                   wrapped["namespaces"][str(pk)]["keys"]["1"]["wrapped"].encode()):
        assert secret not in sealed

    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "new-keystore"  # the key store is lost
    namespace_keys.forget_all()
    with pytest.raises(KeyUnavailable):
        namespace_keys.data_key(keyed.pk)
    out = _restore_keys(backup)
    assert "1 namespace keys added" in out and "KEK restored" in out, out
    namespace_keys.forget_all()
    assert namespace_keys.data_key(keyed.pk) == (1, key)
    assert (tmp_path / "new-keystore" / key_providers.DEFAULT_KEK_FILE).read_bytes() == kek
    assert not (tmp_path / "new-keystore" / erasure_ledger.FILE_NAME).exists()  # never in it


def test_a_wrong_passphrase_is_refused_and_changes_nothing(keyed, key_store, tmp_path,
                                                           settings):
    backup = _backup_keys(tmp_path, keys_passphrase_file=_passphrase_file(tmp_path))
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "other"
    namespace_keys.create(999, "other")  # a key store with its own content
    before = _snapshot(tmp_path / "other")
    wrong = _passphrase_file(tmp_path, "not the passphrase at all")
    with pytest.raises(CommandError, match="wrong passphrase"):
        _restore_keys(backup, keys_passphrase_file=wrong)
    assert _snapshot(tmp_path / "other") == before
    backup.write_bytes(backup.read_bytes()[:-1] + bytes([backup.read_bytes()[-1] ^ 1]))
    with pytest.raises(CommandError, match="changed"):  # tampered: the same refusal
        _restore_keys(backup, keys_passphrase_file=_passphrase_file(tmp_path))
    assert _snapshot(tmp_path / "other") == before


def test_a_restore_never_resurrects_a_shredded_key(keyed, beta, tmp_path, monkeypatch):
    namespace_keys.create(beta.pk, beta.slug)
    monkeypatch.setenv("MEMORYWEB_KEYS_PASSPHRASE", PASSPHRASE)
    backup = _backup_keys(tmp_path)  # holds alpha's and beta's keys
    pk = keyed.pk
    delete_namespace(ROOT, keyed)  # shredded after the key backup
    out = _restore_keys(backup)
    assert "1 shredded here and not brought back" in out and "1 already there" in out, out
    assert f"namespace {pk}: its key was shredded here" in out
    namespace_keys.forget_all()
    assert not namespace_keys.has_key(pk) and _destroyed(pk)
    assert namespace_keys.has_key(beta.pk)


def test_a_different_kek_is_replaced_only_when_asked(keyed, key_store, tmp_path, settings,
                                                     monkeypatch):
    _, key = namespace_keys.data_key(keyed.pk)
    monkeypatch.setenv("MEMORYWEB_KEYS_PASSPHRASE", PASSPHRASE)
    backup = _backup_keys(tmp_path)
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "other"
    namespace_keys.forget_all()
    namespace_keys.create(999, "other")  # makes another KEK
    _, other_key = namespace_keys.data_key(999)
    before = _snapshot(tmp_path / "other")
    with pytest.raises(CommandError, match=r"differs from the backup's.*--replace-kek"):
        _restore_keys(backup)
    assert _snapshot(tmp_path / "other") == before
    out = _restore_keys(backup, replace_kek=True)
    assert "KEK replaced" in out, out
    namespace_keys.forget_all()
    assert namespace_keys.data_key(keyed.pk) == (1, key)  # under the backup's KEK
    assert namespace_keys.data_key(999) == (1, other_key)  # under the kept, retired one


def test_key_backup_passphrases_come_from_a_file_or_the_environment_only(keyed, tmp_path):
    with pytest.raises(CommandError, match="--keys-passphrase-file FILE or set "
                                           "MEMORYWEB_KEYS_PASSPHRASE"):
        call_command("backup", keys_to=tmp_path / "k")  # stdin is no terminal here
    with pytest.raises(CommandError, match="at least 12 characters"):
        _backup_keys(tmp_path, keys_passphrase_file=_passphrase_file(tmp_path, "short"))
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("backup", "--keys-to", str(tmp_path / "k"), "--passphrase", "x")
    assert not (tmp_path / "k").exists()
    with pytest.raises(CommandError, match=r"--output FILE.*--keys-to FILE"):
        call_command("backup")


@pytest.mark.processes
def test_a_data_backup_holds_no_key_material_and_restores_beside_its_key_backup(
        embedded_env, tmp_path):
    """Real processes: ``backup -o --keys-to``, then ``restore FILE --keys-from`` into a new
    data directory and a new, empty key store."""
    set_up_demo(embedded_env)
    keystore = Path(embedded_env["MEMORYWEB_DATA_DIR"] + "-keystore")
    manage_process(embedded_env, "shell", "-c", (
        "from apps.core import keystore, namespace_keys; from apps.tenancy.models import "
        "Namespace; ns = Namespace.objects.get(slug='demo'); "
        "namespace_keys.create(ns.pk, ns.slug); keystore.key(keystore.SELECTOR_KEY_NAME)"))
    env = {**embedded_env, "MEMORYWEB_KEYS_PASSPHRASE": PASSPHRASE}
    out = manage_process(env, "backup", "-o", str(tmp_path / "data.tar.gz"),
                         "--keys-to", str(tmp_path / "keys.mwkeys")).stdout
    assert "key backup of 1 namespace keys" in out, out

    with tarfile.open(tmp_path / "data.tar.gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    assert set(members) <= {"manifest.json", "memoryweb.sqlite3", "secret_key",
                            "audit-anchor.json"}, set(members)
    secrets_in_store = [path.read_bytes() for path in keystore.iterdir()
                        if path.is_file() and path.name != ".lock"]
    assert {p.name for p in keystore.iterdir()} >= {namespace_keys.FILE_NAME, "kek.key",
                                                    "selector.key"}
    stored = json.loads((keystore / namespace_keys.FILE_NAME).read_text())
    (entry,) = stored["namespaces"].values()
    wrapped = entry["keys"]["1"]["wrapped"].encode()
    for content in members.values():
        assert wrapped not in content and namespace_keys.FILE_NAME.encode() not in content
        for secret in secrets_in_store:
            assert secret not in content and base64.b64encode(secret) not in content

    show = ("from apps.core import namespace_keys; import hashlib; "
            "print('KEY', hashlib.sha256(namespace_keys.data_key(1)[1]).hexdigest())")
    before = manage_process(env, "shell", "-c", show).stdout
    restored = {**env, "MEMORYWEB_DATA_DIR": str(tmp_path / "restored"),
                "MEMORYWEB_KEYSTORE_DIR": str(tmp_path / "new-keystore")}
    out = manage_process(restored, "restore", str(tmp_path / "data.tar.gz"),
                         "--keys-from", str(tmp_path / "keys.mwkeys")).stdout
    assert "1 namespace keys added" in out and "audit chain intact" in out, out
    assert manage_process(restored, "shell", "-c", show).stdout == before
    assert "KEY " + hashlib.sha256(b"").hexdigest() not in before


# --- rotate_keys -------------------------------------------------------------------------

def _rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_keys", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_rotating_the_file_kek_rewraps_every_key_and_deletes_the_old_kek(keyed, beta,
                                                                         key_store):
    namespace_keys.create(beta.pk, beta.slug)
    keys = {pk: namespace_keys.data_key(pk)[1] for pk in (keyed.pk, beta.pk)}
    old_kek = (key_store / key_providers.DEFAULT_KEK_FILE).read_bytes()
    out = _rotate(kek=True)
    new_kek = (key_store / key_providers.DEFAULT_KEK_FILE).read_bytes()
    assert new_kek != old_kek
    new_id = key_providers.fingerprint(new_kek)
    assert f"2 of 2 data keys re-wrapped under {new_id}" in out, out
    assert f"retired KEK {key_providers.fingerprint(old_kek)} deleted" in out
    assert not list(key_store.glob("kek-*.retired"))
    assert namespace_keys.kek_ids_in_use() == {new_id}
    namespace_keys.forget_all()
    assert {pk: namespace_keys.data_key(pk)[1] for pk in keys} == keys  # same data keys
    entry = AuditEntry.objects.get(operation="encryption.rotate_kek")
    assert entry.actor == "system:manage.py rotate_keys"
    assert entry.summary["rewrapped"] == 2 and entry.summary["kek"] == new_id


def test_rotating_the_env_kek_rewraps_under_the_new_one(settings, monkeypatch):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)

    def encoded(kek: bytes) -> str:
        return base64.urlsafe_b64encode(kek).decode()

    settings.MEMORYWEB_KEY_PROVIDER = "env"
    monkeypatch.setenv("MEMORYWEB_KEK", encoded(old))
    namespace_keys.create(4242, "env-ns")
    _, key = namespace_keys.data_key(4242)
    out = _rotate(kek=True)
    assert "0 of 1 data keys re-wrapped" in out and "put the new KEK in MEMORYWEB_KEK" in out
    monkeypatch.setenv("MEMORYWEB_KEK", encoded(new))
    monkeypatch.setenv("MEMORYWEB_KEK_PREVIOUS", encoded(old))
    out = _rotate(kek=True)
    assert f"1 of 1 data keys re-wrapped under {key_providers.fingerprint(new)}" in out, out
    assert "remove MEMORYWEB_KEK_PREVIOUS" in out
    monkeypatch.delenv("MEMORYWEB_KEK_PREVIOUS")
    namespace_keys.forget_all()
    assert namespace_keys.data_key(4242) == (1, key)  # opens without the previous KEK


class RotatingKms(LocalKeys):
    """A KMS stand-in through a dotted path: its current key is the class attribute."""

    current = secrets.token_bytes(32)
    previous: list[bytes] = []

    def __init__(self) -> None:
        super().__init__(RotatingKms.current, RotatingKms.previous)


def test_rotating_under_a_dotted_path_provider_rewraps_under_its_current_key(settings):
    settings.MEMORYWEB_KEY_PROVIDER = f"{__name__}:RotatingKms"
    namespace_keys.create(77, "kms-ns")
    _, key = namespace_keys.data_key(77)
    RotatingKms.previous, RotatingKms.current = [RotatingKms.current], secrets.token_bytes(32)
    out = _rotate(kek=True)
    assert "1 of 1 data keys re-wrapped" in out, out
    RotatingKms.previous = []
    namespace_keys.forget_all()
    assert namespace_keys.data_key(77) == (1, key)


def test_a_new_data_key_version_for_one_namespace(keyed, beta):
    _, first = namespace_keys.data_key(keyed.pk)
    out = _rotate(namespace="alpha")
    assert "alpha: data key version 2 is current" in out, out
    assert "encrypt_namespace alpha --reseal" in out  # what re-seals the older values
    version, second = namespace_keys.data_key(keyed.pk)
    assert version == 2 and second != first
    assert namespace_keys.data_key(keyed.pk, 1) == (1, first)  # the old one still opens
    entry = AuditEntry.objects.get(operation="encryption.new_data_key")
    assert entry.namespace == "alpha" and entry.summary == {"version": 2, "older_versions": [1]}
    with pytest.raises(CommandError, match="no namespace 'nope'"):
        _rotate(namespace="nope")
    with pytest.raises(CommandError, match="'beta' has no data key"):
        _rotate(namespace="beta")
    with pytest.raises(CommandError, match="one of the arguments --kek --namespace"):
        _rotate()


def test_a_kek_rotation_on_keys_that_do_not_open_changes_nothing(keyed, key_store):
    (key_store / key_providers.DEFAULT_KEK_FILE).write_bytes(secrets.token_bytes(32))  # wrong
    before = _snapshot(key_store)
    with pytest.raises(CommandError, match="nothing was rotated"):
        _rotate(kek=True)
    assert _snapshot(key_store) == before
