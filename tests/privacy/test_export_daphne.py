"""Export streamed by a real Daphne process (the ASGI path), and the audit chain it
leaves checked by manage.py audit_verify in another process (anchor file included)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import ROOT, DaphneServer


def test_export_streams_over_daphne_and_the_chain_verifies(embedded_env, tmp_path):
    migrate(embedded_env)
    _, key = manage_commands(embedded_env, ["create_namespace", "demo"], [
        "create_api_key", "--namespace", "demo", "--role", "admin", "--agent-id", "ops"])
    headers = {"Authorization": f"Bearer {key}"}
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        for start in (0, 600):  # more than one export chunk (500 memories)
            batch = {"memories": [{"content": f"exported memory {i}"}
                                  for i in range(start, start + 600)]}
            assert httpx.post(f"{server.url}/api/v1/memories/batch", headers=headers, json=batch,
                              timeout=120).status_code == 201

        def write(worker: int) -> None:  # concurrent writers: the chain must stay gapless
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
                for i in range(5):
                    response = client.post("/api/v1/memories",
                                           json={"content": f"worker {worker} note {i}"})
                    assert response.status_code == 201

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(write, range(6)))
        chunks = []
        with httpx.stream("GET", f"{server.url}/api/v1/export", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-ndjson"
            chunks = list(response.iter_raw())
    body = b"".join(chunks)
    lines = body.splitlines(keepends=True)
    manifest = json.loads(lines[-1])
    assert manifest["counts"]["memory"] == 1230
    assert manifest["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    assert len(chunks) > 1  # streamed in pieces, not one body
    verified = subprocess.run([sys.executable, "manage.py", "audit_verify", "--no-progress"],
                              cwd=ROOT, env=embedded_env, capture_output=True, text=True,
                              timeout=120)
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact: 35 entries" in verified.stdout  # namespace, key, 2 + 30, export
