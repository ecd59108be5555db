"""The drop-in routes over real HTTP on a real Daphne: seed 000's documented curl commands
run by the real `curl` (with a key added), after `manage.py import_memories` read a seed
000 data directory in its own process; seed 003's SDK calls (token, store, recall,
DELETE with a JSON body) as its client sends them; and the lifecycle routes of both seeds
(``/cmm/consolidate``, ``/cmm/end_of_day``, ``/cmm/merge``, ``/v1/consolidate``) with
their seeds' roles. One server for the module; each test has namespaces of its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from tests.helpers.embedded import embedded_environment, manage_commands, migrate
from tests.servers import ROOT, DaphneServer

RATE_LIMIT = "The API rate limit is 480 req/min (confirmed by load test)"
pytestmark = [pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary"),
              pytest.mark.processes]
#: (key name, namespace, role): seed 000's demo keys, then one namespace per lifecycle test.
KEYS = [("reader", "demo", "reader"), ("agent", "demo", "agent"), ("admin", "demo", "admin"),
        ("ops-agent", "ops", "agent"), ("ops-admin", "ops", "admin"),
        ("old-agent", "old-team", "agent"), ("old-admin", "old-team", "admin"),
        ("sdk-agent", "sdk", "agent"), ("sdk-admin", "sdk", "admin")]
NAMESPACES = ("demo", "ops", "old-team", "new-team", "sdk")
#: Two paraphrases (one group to merge) and two facts that differ in a number (a conflict,
#: never merged), as a team's agents write them.
PARAPHRASES = ["Production deploys happen on Tuesday afternoons.",
               "Deployments to production happen every Tuesday afternoon."]
DIFFER = ["The API timeout is 30 seconds.", "The API timeout is 45 seconds."]


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


@dataclass
class Deployment:
    url: str
    keys: dict[str, str]
    #: ``manage.py import_memories`` of seed 000's data into demo (before the server).
    imported: subprocess.CompletedProcess

    def auth(self, name: str) -> list[str]:
        """curl's arguments for the key ``name``."""
        return ["-H", f"Authorization: Bearer {self.keys[name]}"]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    """One embedded deployment and one Daphne for the module: the namespaces and keys of
    ``KEYS`` and a system admin's key made in one management shell, seed 000's data
    imported into demo by its own command."""
    base = tmp_path_factory.mktemp("over-http")
    env = embedded_environment(base / "data")
    migrate(env)
    made = manage_commands(env, *(["create_namespace", slug] for slug in NAMESPACES), *(
        ["create_api_key", "--namespace", slug, "--role", role, "--agent-id", f"{name}-bot"]
        for name, slug, role in KEYS), ["create_api_key", "--system-admin", "--agent-id", "root"])
    keys = {name: key.splitlines()[-1] for name, key in zip(
        [*(name for name, _, _ in KEYS), "system"], made[len(NAMESPACES):], strict=True)}
    data = base / "cmm-data"
    _seed_000_data(data)
    imported = subprocess.run(
        [sys.executable, "manage.py", "import_memories", "--namespace", "demo", "--format", "cmm",
         str(data)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    with DaphneServer(base / "daphne.log", env) as server:
        yield Deployment(server.url, keys, imported)


def test_seed_000_curl_examples_and_seed_003_sdk_calls(deployment):
    imported = deployment.imported
    assert imported.returncode == 0, imported.stderr
    assert "demo: 3 imported, 0 already there" in imported.stdout
    assert "3memory" in imported.stderr.replace(" ", "")  # tqdm's bar: 3 memory [...]
    keys, url, auth = deployment.keys, deployment.url, deployment.auth
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


def _ingest(deployment: Deployment, key: str, texts: list[str]) -> dict[str, dict]:
    """curl -d '{"gist": ...}' http://localhost:7832/ingest, per text: each answer by text."""
    stored = {}
    for text in texts:
        status, body = _curl(*deployment.auth(key), f"{deployment.url}/cmm/ingest",
                             "-d", json.dumps({"gist": text}))
        assert status == 201, body
        stored[text] = body
    return stored


def test_seed_000_consolidate_and_end_of_day_are_a_team_admins(deployment):
    """Seed 000's /consolidate and /end_of_day (team admin; an agent is refused):
    consolidation merges the two paraphrases at once, its answer naming both by their seed
    000 numbers, and links the facts that differ in a number as a conflict; the day's
    digest has grips to the day's memories and a second call builds nothing."""
    url, auth = deployment.url, deployment.auth
    numbers = {text: body["id"] for text, body in
               _ingest(deployment, "ops-agent", [*PARAPHRASES, *DIFFER]).items()}
    for route in ("consolidate", "end_of_day"):
        status, body = _curl(*auth("ops-agent"), f"{url}/cmm/{route}", "-d", "{}")
        assert status == 403 and "error" in body, (route, body)
    assert len(_curl(*auth("ops-agent"), f"{url}/cmm/memories?limit=50")[1]["memories"]) == 4

    # curl -X POST http://localhost:7832/consolidate (the seed's call does the work)
    status, body = _curl(*auth("ops-admin"), f"{url}/cmm/consolidate", "-d", "{}")
    assert status == 200, body
    assert (body["namespace"], body["dry_run"], body["merged"], body["superseded"]) == (
        "ops", False, 1, 1)
    [group] = body["groups"]
    assert {group["kept"], *group["merged"]} == {numbers[text] for text in PARAPHRASES}
    assert group["applied"] is True and group["gist"] in PARAPHRASES
    assert [(sorted(c["ids"]), c["differs_in"]) for c in body["conflicts"]] == [
        (sorted(numbers[text] for text in DIFFER), ["number"])]
    status, listed = _curl(*auth("ops-agent"), f"{url}/cmm/memories?limit=50")
    assert {m["id"] for m in listed["memories"]} == {group["kept"], *(numbers[t] for t in DIFFER)}

    # curl -X POST http://localhost:7832/end_of_day (today's digest, UTC)
    status, day = _curl(*auth("ops-admin"), f"{url}/cmm/end_of_day", "-d", "{}")
    assert status == 200, day
    assert (day["namespace"], day["agent_id"], day["built"], day["empty"]) == (
        "ops", "", True, False)
    assert day["date"] == datetime.now(UTC).date().isoformat() and day["summary"]
    grips = {grip["id"] for grip in day["grips"]}
    assert grips and grips <= set(numbers.values()) and day["source_count"] >= len(grips) - 1
    assert all(grip["excerpt"] in next(t for t, n in numbers.items() if n == grip["id"])
               for grip in day["grips"])
    status, summary = _curl(*auth("ops-agent"), f"{url}/cmm/memory/{day['memory_id']}")
    assert status == 200 and summary["kind"] == "summary"
    status, again = _curl(*auth("ops-admin"), f"{url}/cmm/end_of_day", "-d", "{}")
    assert status == 200 and again["built"] is False
    assert (again["memory_id"], again["grips"]) == (day["memory_id"], day["grips"])


def test_seed_000_merge_is_a_system_admins(deployment):
    """Seed 000's /merge (system admin; the source's own team admin is refused): every
    memory of the source moves into the target with its id, the source is archived and
    its keys stop working."""
    url, auth = deployment.url, deployment.auth
    stored = _ingest(deployment, "old-agent", ["The on-call rota starts on Mondays at 9am.",
                                               "Runbooks for the billing service live in the wiki."])
    merge = json.dumps({"source": "old-team", "target": "new-team"})
    status, body = _curl(*auth("old-admin"), f"{url}/cmm/merge", "-d", merge)
    assert status == 403 and "error" in body, body
    # curl -X POST http://localhost:7832/merge
    status, body = _curl(*auth("system"), f"{url}/cmm/merge", "-d", merge)
    assert status == 200, body
    assert (body["state"], body["moved"]) == ("done", 2)
    status, listed = _curl(*auth("system"), f"{url}/cmm/memories?namespace=new-team&limit=50")
    assert status == 200
    assert {m["memoryweb_id"]: m["gist"] for m in listed["memories"]} == {
        answer["memory"]["memoryweb_id"]: text for text, answer in stored.items()}
    assert _curl(*auth("old-agent"), f"{url}/cmm/memories?limit=50")[0] == 401  # revoked
    assert _curl(*auth("system"), f"{url}/cmm/merge", "-d", merge)[0] == 409  # archived


def test_seed_003_consolidate_is_a_team_admins(deployment):
    """Seed 003's "merge similar memories" as its client calls it: an agent's token is
    refused, a team admin's call merges the two paraphrases and leaves the facts that
    differ in a number apart, as a conflict."""
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        token = client.post("/v1/auth/token",
                            json={"api_key": deployment.keys["sdk-agent"]}).json()["token"]
        agent = {"Authorization": f"Bearer {token}"}
        ids = {text: client.post("/v1/store", headers=agent, json={"content": text}).json()["id"]
               for text in [*PARAPHRASES, *DIFFER]}
        refused = client.post("/v1/consolidate", headers=agent, json={})
        assert refused.status_code == 403 and "error" in refused.json()
        response = client.post("/v1/consolidate", headers=deployment.bearer("sdk-admin"), json={})
        body = response.json()
        assert response.status_code == 200, body
        assert (body["namespace"], body["dry_run"], body["merged"]) == ("sdk", False, 1)
        [group] = body["groups"]
        assert {group["kept"], *group["merged"]} == {ids[text] for text in PARAPHRASES}
        assert group["applied"] is True and group["content"] in PARAPHRASES
        assert [(c["members"], c["differs_in"]) for c in body["conflicts"]] == [
            (sorted(ids[text] for text in DIFFER), ["number"])]
        listed = client.get("/v1/memories", headers=agent).json()["memories"]
        assert {m["id"] for m in listed} == {group["kept"], *(ids[text] for text in DIFFER)}
