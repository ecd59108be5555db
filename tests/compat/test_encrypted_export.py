"""Export files encrypted on request (issue 23 item 1): ``manage.py export --encrypt``
writes AES-256-GCM under a passphrase (apps/core/stream_crypto.py) and
``import_memories`` reads it back with it; a wrong passphrase or a changed file imports
nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.tenancy.services import create_namespace
from tests.helpers.callers import make_caller

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def vault(db):
    namespace = create_namespace("vault", encrypted=True)
    caller = make_caller(Role.AGENT, namespace, "agent-v")
    for text in ("Dana's locker code is 4417", "Pistachio the cat is due a vaccine"):
        assert caller.post("/api/v1/memories", {"content": text,
                                                "metadata": {"subject_id": "dana"}}
                           ).status_code == 201
    return namespace


def _export(path, *extra) -> str:
    out = io.StringIO()
    call_command("export", "--namespace", "vault", "-o", str(path), *extra, stdout=out,
                 stderr=io.StringIO())
    return out.getvalue()


def _import(path, *extra) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_memories", "--namespace", "copy", "--format", "jsonl", str(path),
                     "--no-progress", *extra, stdout=out, stderr=err)
        return 0, out.getvalue(), err.getvalue()
    except SystemExit as exc:
        return exc.code, out.getvalue(), err.getvalue()


def test_an_encrypted_export_holds_no_text_and_imports_back_with_its_passphrase(vault, tmp_path):
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    assert "encrypted" in _export(tmp_path / "vault.enc", "--encrypt", "--passphrase-file",
                                  str(secret))
    blob = (tmp_path / "vault.enc").read_bytes()
    assert b"4417" not in blob and b"Pistachio" not in blob and b"dana" not in blob
    assert (tmp_path / "vault.enc").stat().st_mode & 0o777 == 0o600
    _export(tmp_path / "vault.jsonl")  # the control: without --encrypt the text is there
    assert b"Pistachio" in (tmp_path / "vault.jsonl").read_bytes()

    create_namespace("copy")
    code, out, err = _import(tmp_path / "vault.enc", "--passphrase-file", str(secret))
    assert code == 0, err
    assert "2 imported" in out
    texts = {m.content for m in Memory.objects.filter(namespace__slug="copy")}
    assert texts == {"Dana's locker code is 4417", "Pistachio the cat is due a vaccine"}


def test_a_wrong_passphrase_or_a_changed_file_imports_nothing(vault, tmp_path):
    secret, wrong = tmp_path / "passphrase", tmp_path / "wrong"
    secret.write_text(PASSPHRASE)
    wrong.write_text("not the passphrase at all")
    _export(tmp_path / "vault.enc", "--encrypt", "--passphrase-file", str(secret))
    create_namespace("copy")
    with pytest.raises(CommandError, match="wrong passphrase"):
        _import(tmp_path / "vault.enc", "--passphrase-file", str(wrong))
    changed = bytearray((tmp_path / "vault.enc").read_bytes())
    changed[-3] ^= 1
    (tmp_path / "changed.enc").write_bytes(bytes(changed))
    with pytest.raises(CommandError, match="changed"):
        _import(tmp_path / "changed.enc", "--passphrase-file", str(secret))
    assert not Memory.objects.filter(namespace__slug="copy").exists()


def test_a_short_passphrase_or_one_without_encrypt_is_refused(vault, tmp_path):
    short = tmp_path / "short"
    short.write_text("tooshort")
    with pytest.raises(CommandError, match="shorter than 12"):
        _export(tmp_path / "out.enc", "--encrypt", "--passphrase-file", str(short))
    with pytest.raises(CommandError, match="goes with --encrypt"):
        _export(tmp_path / "out.enc", "--passphrase-file", str(short))
    assert not (tmp_path / "out.enc").exists()
