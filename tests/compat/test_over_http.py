"""The drop-in routes over real HTTP on a real Daphne: seed 000's documented curl commands
run by the real `curl` (with a key added), after `manage.py import_memories` read a seed
000 data directory in its own process; and seed 003's SDK calls (token, store, recall,
DELETE with a JSON body) as its client sends them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import ROOT, DaphneServer

RATE_LIMIT = "The API rate limit is 480 req/min (confirmed by load test)"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def _curl(*args: str) -> tuple[int, dict]:
    """Run curl; the HTTP status and the JSON body."""
    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True,
                          text=True, timeout=60, check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def _seed_000_data(path) -> None:
    path.mkdir()
    (path / "memories.json").write_text(json.dumps([
        {"id": 41, "gist": "Deploys happen on Tuesdays", "importance": 1.0,
         "metadata": {"agent_id": "agent-12", "session_id": "s-1"}},
        {"id": 42, "gist": "The API rate limit is 300 req/min", "importance": 1.0,
         "metadata": {"agent_id": "agent-47", "session_id": "s-2"}},
        {"id": 43, "gist": "The staging database is called pluto", "importance": 3.0,
         "metadata": {"agent_id": "agent-47", "session_id": "s-2"}}]))
    (path / "entities.json").write_text(json.dumps({"pluto": [43]}))
    (path / "faiss.index").write_bytes(b"not read")


def test_seed_000_curl_examples_and_seed_003_sdk_calls(embedded_env, tmp_path):
    migrate(embedded_env)
    roles = ("reader", "agent", "admin")
    _, *made = manage_commands(embedded_env, ["create_namespace", "demo"], *(
        ["create_api_key", "--namespace", "demo", "--role", role, "--agent-id", f"{role}-bot"]
        for role in roles), ["create_api_key", "--system-admin", "--agent-id", "root"])
    keys = {name: key.splitlines()[-1] for name, key in zip([*roles, "system"], made, strict=True)}
    data = tmp_path / "cmm-data"
    _seed_000_data(data)
    imported = subprocess.run(
        [sys.executable, "manage.py", "import_memories", "--namespace", "demo", "--format", "cmm",
         str(data)], cwd=ROOT, env=embedded_env, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert "demo: 3 imported, 0 already there" in imported.stdout
    assert "3memory" in imported.stderr.replace(" ", "")  # tqdm's bar: 3 memory [...]

    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        url = server.url

        def auth(role: str) -> list[str]:
            return ["-H", f"Authorization: Bearer {keys[role]}"]

        # Without a key, every documented call is refused.
        for call in (["-X", "PUT", f"{url}/cmm/memory/42", "-d", '{"gist": "x"}'],
                     [f"{url}/cmm/memory/42"], ["-X", "DELETE", f"{url}/cmm/memory/42"],
                     ["-X", "DELETE", f"{url}/cmm/memories/agent/agent-47"],
                     [f"{url}/cmm/memories?agent_id=agent-47&limit=50"]):
            status, body = _curl(*call)
            assert status == 401 and body["error"]["code"] == "not_authenticated", call

        # curl http://localhost:7832/memory/42
        status, body = _curl(*auth("reader"), f"{url}/cmm/memory/42")
        assert status == 200 and body["gist"] == "The API rate limit is 300 req/min"
        # curl -X PUT http://localhost:7832/memory/42 -d '{"gist": ..., "importance": 2.0}'
        put = json.dumps({"gist": RATE_LIMIT, "importance": 2.0})
        status, body = _curl(*auth("admin"), "-X", "PUT", f"{url}/cmm/memory/42", "-d", put)
        assert status == 200, body
        assert (body["gist"], body["importance"], body["version"]) == (RATE_LIMIT, 2.0, 2)
        # curl "http://localhost:7832/memories?agent_id=agent-47&limit=50"
        status, body = _curl(*auth("reader"), f"{url}/cmm/memories?agent_id=agent-47&limit=50")
        assert status == 200 and [m["id"] for m in body["memories"]] == [43, 42]
        # curl -X DELETE http://localhost:7832/memories/agent/agent-47
        status, _ = _curl(*auth("admin"), "-X", "DELETE", f"{url}/cmm/memories/agent/agent-47")
        assert status == 403  # a system admin's operation
        status, body = _curl(*auth("system"), "-X", "DELETE",
                             f"{url}/cmm/memories/agent/agent-47")
        assert status == 200 and body == {"deleted": 2, "agent_id": "agent-47",
                                          "namespaces": {"demo": 2}}
        # curl -X DELETE http://localhost:7832/memory/42 (gone with agent-47's; 41 is left)
        assert _curl(*auth("admin"), "-X", "DELETE", f"{url}/cmm/memory/42")[0] == 404
        status, body = _curl(*auth("admin"), "-X", "DELETE", f"{url}/cmm/memory/41")
        assert status == 200 and body == {"deleted": True, "id": 41}

        # Seed 003: the SDK's connect(), store, recall, update, forget over HTTP.
        with httpx.Client(base_url=url, timeout=60) as client:
            token = client.post("/v1/auth/token", json={"api_key": keys["agent"]}).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            stored = client.post("/v1/store", json={"content": "The release train leaves Friday",
                                                    "tags": ["release"]}).json()
            found = client.post("/v1/recall", json={"query": "when does the release train "
                                                             "leave?", "limit": 3}).json()
            assert found["memories"][0]["memory"]["id"] == stored["id"]
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            updated = client.patch("/v1/update", headers=admin,
                                   json={"id": stored["id"], "tags": ["release", "train"]})
            assert updated.status_code == 200 and updated.json()["version"] == 2
            refused = client.request("DELETE", "/v1/forget", json={"ids": [stored["id"]]})
            assert refused.status_code == 403 and "error" in refused.json()
            forgot = client.request("DELETE", "/v1/forget", headers=admin,
                                    json={"ids": [stored["id"]]})
            assert forgot.status_code == 200 and forgot.json() == {"deleted": 1}
