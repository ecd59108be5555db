"""Restores replay erasures on PostgreSQL too: ``pg_dump`` backup, an erasure after it,
``pg_restore`` into an empty database with the deployment's key store: the subject is
gone again before anything serves, the certificate verifies, and a database put back
with ``pg_restore`` by hand is refused until ``replay_erasures`` (docs/privacy.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

#: manage.py processes on PostgreSQL databases of their own.
pytestmark = pytest.mark.processes
POSTGRES = os.environ.get("MEMORYWEB_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
EMAIL = "dana.planted@example.com"

STORE = f"""
from django.core.management import call_command
call_command("create_namespace", "demo")
from apps.memories import services
from apps.tenancy.principal import Principal
from apps.core.roles import Role
root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
services.ingest_many(root, [
    {{"content": "Dana's allergy: peanuts.", "metadata": {{"subject_id": "{EMAIL}"}}}},
    {{"content": "Dana's allergy: sesame.", "metadata": {{"subject_id": "{EMAIL}"}}}},
    {{"content": "Lunch is at noon."}}], namespace="demo")
"""

ERASE = f"""
import json
from apps.privacy import erasure
from apps.tenancy.principal import Principal
from apps.core.roles import Role
root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
done = erasure.create(root, {{"namespace": "demo", "subject_id": "{EMAIL}", "execute": True}})
print("CERTIFICATE=" + json.dumps(done.certificate))
"""

CONTENTS = """
from apps.memories.models import Memory
print("CONTENTS=" + "|".join(sorted(Memory.objects.values_list("content", flat=True))))
"""


def _manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def _tagged(out: str, tag: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(tag))[len(tag):]


def _pg_env(tmp_path, name: str, database: str, keystore) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(tmp_path / name), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                "MEMORYWEB_KEYSTORE_DIR": str(keystore),
                "DATABASE_URL": f"{POSTGRES.rsplit('/', 1)[0]}/{database}"})
    return env


def test_postgresql_restore_replays_an_erasure(tmp_path, databases):
    keystore = tmp_path / "keystore"
    source = _pg_env(tmp_path, "source", databases(), keystore)
    _manage(source, "migrate", "-v0")
    _manage(source, "shell", "-c", STORE)  # create_namespace, then the memories: one start
    _manage(source, "backup", "-o", str(tmp_path / "pg.tar.gz"))
    certificate = json.loads(_tagged(_manage(source, "shell", "-c", ERASE).stdout, "CERTIFICATE="))
    (tmp_path / "certificate.json").write_text(json.dumps(certificate))
    assert EMAIL.encode() not in (keystore / "erasure-ledger.jsonl").read_bytes()

    target = _pg_env(tmp_path, "target", databases(), keystore)
    out = _manage(target, "restore", str(tmp_path / "pg.tar.gz")).stdout
    assert "replayed #1 erasure in demo: 2 memories erased" in out, out
    assert _tagged(_manage(target, "shell", "-c", CONTENTS).stdout, "CONTENTS=") == "Lunch is at noon."
    verified = _manage(target, "verify_certificate", str(tmp_path / "certificate.json")).stdout
    assert "certificate verified: 2 memories erased from demo" in verified, verified

    # pg_restore by hand (no manage.py restore): the database is behind the ledger.
    by_hand = _pg_env(tmp_path, "by-hand", databases(), keystore)
    dump = tmp_path / "unpacked"
    dump.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "pg.tar.gz"), "-C", str(dump)], check=True)
    subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--dbname",
                    by_hand["DATABASE_URL"], str(dump / "database.pgdump")], check=True)
    refused = _manage(by_hand, "check", check=False)
    assert refused.returncode != 0 and "memoryweb.E013" in refused.stderr, refused.stderr
    assert "replayed #1 erasure in demo: 2 memories erased" in _manage(
        by_hand, "replay_erasures").stdout
    _manage(by_hand, "check")
    assert _tagged(_manage(by_hand, "shell", "-c", CONTENTS).stdout, "CONTENTS=") == "Lunch is at noon."
