"""Restores replay erasures (issue 23, item 5; docs/privacy.md#backups-and-erasure).

Real deployments: ``manage.py backup`` beside a running Daphne, an erasure (or retention
expiry, or namespace deletion) after it, ``manage.py restore`` of the older backup into
a fresh data directory with the deployment's key store, then a fresh Daphne on it: the
erased data is gone before the first request, the replay is listed, the certificate
still verifies. A data directory put back by hand makes the server refuse to start until
``manage.py replay_erasures`` has run. A tampered ledger, or a key store that is not the
backup's, makes restore refuse.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.helpers.backup import manage_process, set_up_demo
from tests.helpers.embedded import manage_commands
from tests.servers import DaphneServer

EMAIL = "dana.planted@example.com"
LEDGER = "erasure-ledger.jsonl"


def _client(server: DaphneServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _store(client: httpx.Client, content: str, namespace: str = "demo", **fields) -> str:
    response = client.post("/api/v1/memories", json={"namespace": namespace, "content": content,
                                                     **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _erase_subject(client: httpx.Client) -> dict:
    """A system admin's one-call erasure (four-eyes is off in a local deployment)."""
    response = client.post("/api/v1/erasure-requests", json={
        "namespace": "demo", "subject_id": EMAIL, "reason": "GDPR request 1", "execute": True})
    assert response.status_code == 201 and response.json()["state"] == "executed", response.text
    return response.json()["certificate"]


def _ids(client: httpx.Client, namespace: str = "demo") -> set[str]:
    response = client.get("/api/v1/memories", params={"namespace": namespace, "limit": 1000})
    assert response.status_code == 200, response.text
    return {m["id"] for m in response.json()["results"]}


def _dana(client: httpx.Client) -> list[str]:
    return [_store(client, f"Dana's allergy note {i}: peanuts and sesame.",
                   metadata={"subject_id": EMAIL}) for i in range(2)]


def test_restore_replays_an_erasure_before_the_first_request(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    keystore = Path(embedded_env["MEMORYWEB_DATA_DIR"] + "-keystore")  # the default: a sibling
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        client = _client(server, key)
        dana, other = _dana(client), _store(client, "The office closes at six.")
        manage_process(embedded_env, "backup", "-o", str(tmp_path / "before.tar.gz"))
        certificate = _erase_subject(client)
        assert _ids(client) == {other}
    (tmp_path / "certificate.json").write_text(json.dumps(certificate))
    ledger = (keystore / LEDGER).read_bytes()
    assert EMAIL.encode() not in ledger and b"Dana" not in ledger  # hashes, ids: no person
    assert not (tmp_path / "before.tar.gz").read_bytes().count(b"erasure-ledger")

    restored = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "restored"),
                "MEMORYWEB_KEYSTORE_DIR": str(keystore)}
    out = manage_process(restored, "restore", str(tmp_path / "before.tar.gz")).stdout
    assert "erasure ledger: 1 entries replayed" in out, out
    assert (f"replayed #1 erasure in demo: 2 memories erased, certificate "
            f"{certificate['certificate_sha256']}") in out, out
    with DaphneServer(tmp_path / "restored.log", restored) as server:
        client = _client(server, key)
        assert _ids(client) == {other}  # the first request: Dana is not back
        hits = client.post("/api/v1/recall", json={"namespace": "demo", "query": "allergy peanuts",
                                                   "mode": "vector", "k": 10}).json()["results"]
        assert not {hit["id"] for hit in hits} & set(dana)
        verified = manage_process(restored, "verify_certificate", str(tmp_path / "certificate.json"))
    assert "certificate verified: 2 memories erased from demo" in verified.stdout, verified.stdout
    assert "erasure ledger entry 1 records this certificate's hash" in verified.stdout
    # Restoring once more replays nothing twice: this database includes the entry now.
    again = manage_process(restored, "replay_erasures").stdout
    assert "0 to replay" in again, again


def test_restore_replays_retention_and_a_namespace_deletion(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    manage_commands(embedded_env, ["create_namespace", "gone"])
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        client = _client(server, key)
        old, fresh = _store(client, "An old note about the harbour."), _store(client, "A fresh note.")
        _store(client, "A note in the namespace to delete.", namespace="gone")
        assert client.patch("/api/v1/namespaces/demo", json={"retention_days": 30}).status_code == 200
        manage_process(embedded_env, "shell", "-c", (
            "import datetime as dt; from django.utils import timezone; "
            "from apps.memories.models import Memory; "
            f"Memory.objects.filter(pk='{old}').update("
            "created_at=timezone.now() - dt.timedelta(days=40))"))
        manage_process(embedded_env, "backup", "-o", str(tmp_path / "before.tar.gz"))
        assert "1 memories erased" in manage_process(embedded_env, "expire_memories").stdout
        assert client.delete("/api/v1/namespaces/gone").status_code == 204
        assert _ids(client) == {fresh}

    restored = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "restored"),
                "MEMORYWEB_KEYSTORE_DIR": embedded_env["MEMORYWEB_DATA_DIR"] + "-keystore"}
    out = manage_process(restored, "restore", str(tmp_path / "before.tar.gz")).stdout
    assert "erasure ledger: 2 entries replayed" in out, out
    assert "replayed #1 retention in demo: 1 memories erased, certificate" in out, out
    assert "replayed #2 namespace_deleted in gone: 1 memories erased" in out, out
    with DaphneServer(tmp_path / "restored.log", restored) as server:
        client = _client(server, key)
        assert _ids(client) == {fresh}
        assert client.get("/api/v1/namespaces/gone").status_code == 404


def test_restore_refuses_a_tampered_ledger_or_another_key_store(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    keystore = Path(embedded_env["MEMORYWEB_DATA_DIR"] + "-keystore")
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        client = _client(server, key)
        first = _store(client, "A note to erase before the backup.")
        erased = client.post("/api/v1/erasure-requests", json={
            "namespace": "demo", "ids": [first], "execute": True})
        assert erased.status_code == 201, erased.text
        manage_process(embedded_env, "backup", "-o", str(tmp_path / "b.tar.gz"))
        _dana(client)
        _erase_subject(client)

    other = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "other"),
             "MEMORYWEB_KEYSTORE_DIR": str(tmp_path / "empty-keystore")}
    refused = manage_process(other, "restore", str(tmp_path / "b.tar.gz"), check=False)
    assert refused.returncode != 0
    assert "erasure ledger whose entry 1 this key store does not hold" in refused.stderr, refused.stderr

    lines = (keystore / LEDGER).read_text().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["memories"] = entry["memories"][:1]  # someone drops an id from the erasure
    (keystore / LEDGER).write_text(lines[0] + json.dumps(entry) + "\n")
    tampered = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "tampered"),
                "MEMORYWEB_KEYSTORE_DIR": str(keystore)}
    refused = manage_process(tampered, "restore", str(tmp_path / "b.tar.gz"), check=False)
    assert refused.returncode != 0
    assert "does not verify: entry 2's content does not match its hash" in refused.stderr, refused.stderr


def test_a_data_directory_put_back_by_hand_is_refused_until_replayed(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    data = Path(embedded_env["MEMORYWEB_DATA_DIR"])
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        client = _client(server, key)
        dana, other = _dana(client), _store(client, "The office closes at six.")
    copy = tmp_path / "copy"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("control.sock*", "*.lock"))
    with DaphneServer(tmp_path / "daphne2.log", embedded_env) as server:
        _erase_subject(_client(server, key))
    shutil.rmtree(data)
    shutil.copytree(copy, data)  # the old files back, without manage.py restore

    with pytest.raises(RuntimeError, match="behind the erasure ledger"):
        DaphneServer(tmp_path / "refused.log", embedded_env).start()
    check = manage_process(embedded_env, "check", check=False)
    assert check.returncode != 0 and "memoryweb.E013" in check.stderr, check.stderr
    listed = manage_process(embedded_env, "replay_erasures", "--dry-run").stdout
    assert "would replay #1 erasure in demo: 2 memories" in listed, listed
    out = manage_process(embedded_env, "replay_erasures").stdout
    assert "replayed #1 erasure in demo: 2 memories erased" in out, out
    with DaphneServer(tmp_path / "daphne3.log", embedded_env) as server:
        client = _client(server, key)
        assert _ids(client) == {other}
        hits = client.post("/api/v1/recall", json={"namespace": "demo", "query": "allergy peanuts",
                                                   "mode": "vector", "k": 10}).json()["results"]
        assert not {hit["id"] for hit in hits} & set(dana)  # the copied vectors went too
