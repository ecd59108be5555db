"""Encryption at rest's key layer (issue 23): sealed values, key-encryption-key providers
and the namespaces' data keys in the key store (apps/core/envelope.py,
apps/core/key_providers.py, apps/core/namespace_keys.py). Every failure fails closed."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
from django.core.checks import run_checks

from apps.core import envelope, key_providers, namespace_keys
from apps.core.checks import TAG
from apps.core.key_providers import KeyUnavailable


def kek_errors() -> list[str]:
    return [m.msg for m in run_checks(tags=[TAG]) if m.id == "memoryweb.E014"]


# --- sealed values ------------------------------------------------------------------------

def test_a_sealed_value_opens_only_with_its_key_and_its_own_row():
    key = secrets.token_bytes(32)
    sealed = envelope.seal_text(key, 1, "Dana's phone is 555-0100.", b"memory:7:ns:3")
    assert "555-0100" not in sealed and sealed.startswith(envelope.TEXT_PREFIX)
    assert envelope.open_text(key, sealed, b"memory:7:ns:3") == "Dana's phone is 555-0100."
    with pytest.raises(envelope.Undecryptable, match="moved from another row"):
        envelope.open_text(key, sealed, b"memory:8:ns:3")  # copied to another row
    with pytest.raises(envelope.Undecryptable):
        envelope.open_text(key, sealed, b"memory:7:ns:4")  # or another tenant
    with pytest.raises(envelope.Undecryptable):
        envelope.open_text(secrets.token_bytes(32), sealed, b"memory:7:ns:3")  # wrong key
    raw = bytearray(envelope.sealed_bytes(sealed))
    raw[-1] ^= 1
    tampered = envelope.TEXT_PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(envelope.Undecryptable):
        envelope.open_text(key, tampered, b"memory:7:ns:3")
    for garbage in ("mwenc1:***", "plain text"):
        with pytest.raises(envelope.Undecryptable):
            envelope.open_text(key, garbage, b"memory:7:ns:3")


def test_nonces_never_repeat_and_the_version_is_readable():
    key = secrets.token_bytes(32)
    sealed = [envelope.seal(key, 3, b"same text", b"row") for _ in range(2000)]
    nonces = {s[len(envelope.MAGIC) + 4:len(envelope.MAGIC) + 4 + envelope.NONCE_BYTES]
              for s in sealed}
    assert len(nonces) == 2000 and len(set(sealed)) == 2000
    assert {envelope.version_of(s) for s in sealed} == {3}


# --- the namespaces' data keys ----------------------------------------------------------

def test_a_namespace_key_is_stored_only_wrapped_outside_the_data_directory(key_store, settings):
    assert namespace_keys.create(3, "alpha") == 1
    assert namespace_keys.create(3, "alpha") == 1  # idempotent: the same key
    version, key = namespace_keys.data_key(3)
    assert (version, len(key)) == (1, 32)
    stored = (key_store / namespace_keys.FILE_NAME).read_bytes()
    assert key not in stored and base64.b64encode(key) not in stored
    assert oct((key_store / namespace_keys.FILE_NAME).stat().st_mode & 0o777) == "0o600"
    assert oct((key_store / key_providers.DEFAULT_KEK_FILE).stat().st_mode & 0o777) == "0o600"
    assert not key_store.resolve().is_relative_to(settings.DATA_DIR)
    namespace_keys.create(4, "beta")
    assert namespace_keys.data_key(4)[1] != key  # each namespace its own key


def test_purpose_keys_differ_from_the_data_key_and_from_each_other():
    namespace_keys.create(3, "alpha")
    _, key = namespace_keys.data_key(3)
    blind, hashing = (namespace_keys.subkey(3, "blind-tokens"),
                      namespace_keys.subkey(3, "content-hash"))
    assert len({key, blind, hashing}) == 3
    assert namespace_keys.subkey(3, "blind-tokens") == blind  # stable


def test_a_wrapped_key_moved_to_another_namespace_does_not_open(key_store):
    namespace_keys.create(3, "alpha")
    namespace_keys.create(4, "beta")
    path = key_store / namespace_keys.FILE_NAME
    data = json.loads(path.read_text())
    data["namespaces"]["4"]["keys"]["1"] = data["namespaces"]["3"]["keys"]["1"]
    path.write_text(json.dumps(data))
    namespace_keys.forget_all()
    with pytest.raises(KeyUnavailable, match="moved to another namespace"):
        namespace_keys.data_key(4)
    assert any("namespace 4" in error for error in kek_errors())


def test_a_missing_or_wrong_kek_fails_closed_and_stops_the_server(key_store):
    namespace_keys.create(3, "alpha")
    kek = key_store / key_providers.DEFAULT_KEK_FILE
    original = kek.read_bytes()
    kek.unlink()
    namespace_keys.forget_all()
    with pytest.raises(KeyUnavailable, match="is missing"):
        namespace_keys.data_key(3)
    assert not kek.exists()  # never replaced by a new KEK while keys are wrapped
    assert any("key-encryption key is unavailable" in error for error in kek_errors())
    kek.write_bytes(secrets.token_bytes(32))  # another one
    with pytest.raises(KeyUnavailable, match="wrapped under key-encryption key"):
        namespace_keys.data_key(3)
    assert kek_errors()
    kek.write_bytes(original)
    assert namespace_keys.data_key(3)[0] == 1 and kek_errors() == []


def test_shredding_destroys_every_version_and_says_so(key_store):
    namespace_keys.create(3, "alpha")
    namespace_keys.new_version(3)
    before = (key_store / namespace_keys.FILE_NAME).read_text()
    assert namespace_keys.shred(3) is True
    after = (key_store / namespace_keys.FILE_NAME).read_text()
    assert json.loads(before)["namespaces"]["3"]["keys"]["1"]["wrapped"] not in after
    with pytest.raises(KeyUnavailable, match="crypto-shredded"):
        namespace_keys.data_key(3)
    assert namespace_keys.shred(3) is False
    assert namespace_keys.create(3, "gamma") == 1  # the id reused: a new key, not the old


def test_a_new_version_keeps_the_old_until_retired():
    namespace_keys.create(3, "alpha")
    _, first = namespace_keys.data_key(3)
    assert namespace_keys.new_version(3) == 2
    version, second = namespace_keys.data_key(3)
    assert version == 2 and second != first
    assert namespace_keys.data_key(3, 1) == (1, first)  # still opens what it sealed
    tokens = namespace_keys.subkey(3, "blind-tokens")
    assert namespace_keys.new_version(3) == 3
    # Keyword tokens and content hashes outlive rotations: derived from version 1, kept.
    assert namespace_keys.subkey(3, "blind-tokens") == tokens
    with pytest.raises(KeyUnavailable):
        namespace_keys.retire(3, 3)  # never the current one
    with pytest.raises(KeyUnavailable, match="keyword tokens"):
        namespace_keys.retire(3, 1)  # nor the one the purpose keys come from
    namespace_keys.retire(3, 2)
    with pytest.raises(KeyUnavailable, match="no data key version 2"):
        namespace_keys.data_key(3, 2)
    (found,) = namespace_keys.status()
    assert (found.namespace_id, found.slug, found.current_version, found.versions) == (
        3, "alpha", 3, (1, 3))
    assert found.rotated_at is not None


def test_rotating_the_file_kek_rewraps_every_key_and_keeps_the_data_keys(key_store):
    namespace_keys.create(3, "alpha")
    namespace_keys.create(4, "beta")
    keys = {ns: namespace_keys.data_key(ns)[1] for ns in (3, 4)}
    old, new = key_providers.rotate_file_kek()
    assert old != new
    namespace_keys.forget_all()
    assert namespace_keys.rewrap_all() == 2
    assert namespace_keys.kek_ids_in_use() == {new}
    assert key_providers.forget_retired(namespace_keys.kek_ids_in_use()) == [old]
    namespace_keys.forget_all()
    assert {ns: namespace_keys.data_key(ns)[1] for ns in (3, 4)} == keys
    assert namespace_keys.rewrap_all() == 0  # nothing left under the old KEK


def test_the_env_provider_and_its_rotation(settings, monkeypatch):
    settings.MEMORYWEB_KEY_PROVIDER = "env"
    monkeypatch.delenv("MEMORYWEB_KEK", raising=False)
    assert any("MEMORYWEB_KEK is not set" in error for error in kek_errors())
    first = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("MEMORYWEB_KEK", first)
    namespace_keys.create(3, "alpha")
    _, key = namespace_keys.data_key(3)
    second = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("MEMORYWEB_KEK", second)
    namespace_keys.forget_all()
    with pytest.raises(KeyUnavailable):
        namespace_keys.data_key(3)  # the new KEK alone does not open the old wrapping
    monkeypatch.setenv("MEMORYWEB_KEK_PREVIOUS", first)
    assert namespace_keys.rewrap_all() == 1
    monkeypatch.delenv("MEMORYWEB_KEK_PREVIOUS")
    namespace_keys.forget_all()
    assert namespace_keys.data_key(3)[1] == key
    monkeypatch.setenv("MEMORYWEB_KEK", "not base64 at all!")
    assert any("not URL-safe base64" in error for error in kek_errors())


class VaultLike:
    """A provider as a KMS would be: it keeps its key, and wraps by its own means."""

    _key = os.urandom(32)

    def key_id(self) -> str:
        return "vault:transit/memoryweb"

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        return self.key_id(), envelope.seal(self._key, 1, data_key, context)

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        return envelope.open_sealed(self._key, wrapped, context)


def test_a_dotted_path_plugs_in_a_kms_provider(settings, key_store):
    settings.MEMORYWEB_KEY_PROVIDER = f"{__name__}:VaultLike"
    namespace_keys.create(3, "alpha")
    assert namespace_keys.data_key(3)[0] == 1
    assert json.loads((key_store / namespace_keys.FILE_NAME).read_text())[
        "namespaces"]["3"]["keys"]["1"]["kek"] == "vault:transit/memoryweb"
    assert not (key_store / key_providers.DEFAULT_KEK_FILE).exists()
    settings.MEMORYWEB_KEY_PROVIDER = "nowhere.to.be:Found"
    assert any("cannot be imported" in error for error in kek_errors())
    settings.MEMORYWEB_KEY_PROVIDER = "vault"
    assert any("must be file, env or a dotted path" in error for error in kek_errors())
