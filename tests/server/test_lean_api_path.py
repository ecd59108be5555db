"""The lean path for API calls (issue 19, item 4), through real Daphne processes.

Two servers on copies of one data directory, production-like (MFA required, metrics on):
``lean`` as shipped, and ``full`` with ``MEMORYWEB_LEAN_API=false`` (every request
through the whole middleware chain, as before). A call with a key must get the same
answer from both, skip the browser middleware on ``lean`` (what sessions and CSRF do
shows when they run), stay counted in /metrics; a browser's session keeps the full
chain, and a Bearer header never turns into a session login.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.helpers.browser import PASSWORD
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import DaphneServer

pytestmark = pytest.mark.processes

METRICS_TOKEN = "metrics-token-for-the-lean-path-test"
#: One management-shell run: namespaces, people and keys; prints one JSON line of keys.
SETUP = """
import io, json
from django.core.management import call_command
from django.contrib.auth import get_user_model

def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]

for slug in ("demo", "other"):
    run("create_namespace", slug)
run("add_member", "demo", "alice", "--role", "agent", "--password", PASSWORD)
get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
keys = {name: run("create_api_key", "--namespace", slug, "--role", role, "--agent-id", name)
        for name, slug, role in [("agent", "demo", "agent"), ("admin", "demo", "admin"),
                                 ("doomed", "demo", "agent"), ("leaver", "demo", "agent"),
                                 ("elsewhere", "other", "agent")]}
print("KEYS=" + json.dumps(keys))
"""
#: ``manage.py shell`` code: the leaver's key revoked by a data fix in another process.
REVOKE_LEAVER = ("from django.utils import timezone; from apps.tenancy.models import ApiKey; "
                 "ApiKey.objects.filter(agent_id='leaver').update(revoked_at=timezone.now())")


@dataclass
class Servers:
    lean: DaphneServer
    full: DaphneServer
    keys: dict[str, str]
    env: dict[str, str]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("lean-path")
    setting = {"MEMORYWEB_REQUIRE_MFA": "true", "MEMORYWEB_METRICS_TOKEN": METRICS_TOKEN}
    env = embedded_environment(base / "lean", **setting)
    migrate(env)
    out = manage(env, "shell", "-c", SETUP.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    shutil.copytree(base / "lean", base / "full")
    full_env = embedded_environment(base / "full", MEMORYWEB_LEAN_API="false", **setting)
    with DaphneServer(base / "lean.log", env) as lean, \
            DaphneServer(base / "full.log", full_env) as full:
        yield Servers(lean, full, keys, env)


def _call(server: DaphneServer, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, timeout=60, **kwargs)


#: Headers whose values differ per response (the date, time spent) or per run.
VARYING = {"date", "server-timing"}

#: (method, path, request options, key name or a raw Authorization value): answers with
#: a fixed body, so both servers' bodies must match byte for byte.
SAME_ANSWERS = [
    ("GET", "/api/v1/namespaces/demo", {}, "agent"),  # 200
    ("GET", "/api/v1/memories?limit=1", {}, "Bearer mw_live_not-a-real-key"),  # 401
    ("GET", "/api/v1/memories?limit=1", {}, "Bearer"),  # 401, key missing
    ("GET", "/api/v1/no-such-route", {}, "agent"),  # 404 JSON
    ("GET", "/api/v1/namespaces/nope", {}, "agent"),  # 404 from a service
    ("DELETE", "/api/v1/recall", {}, "agent"),  # 405
    ("POST", "/api/v1/memories", {"content": b"{not json",
                                  "headers": {"Content-Type": "application/json"}}, "agent"),  # 400
    ("POST", "/api/v1/memories", {"json": {"content": ""}}, "agent"),  # 400 naming the field
    ("POST", "/api/v1/memories", {"content": b"x" * (3 * 1024 * 1024),
                                  "headers": {"Content-Type": "application/json"}}, "agent"),  # 413
    ("GET", "/v1/memories?limit=1", {}, "agent"),  # seed 003's door
    ("GET", "/api/v1/namespaces/demo/keys", {}, "agent"),  # 403: an agent manages no keys
    ("POST", "/api/v1/memories", {"json": {"content": "Stored on both servers."}}, "agent"),  # 201
]


def _authorization(servers: Servers, who: str) -> dict[str, str]:
    return {"Authorization": who} if who.startswith("Bearer") else servers.bearer(who)


def _same_headers(lean: httpx.Response, full: httpx.Response, varying: set[str]) -> None:
    names = {name for name in {*lean.headers, *full.headers} if name not in VARYING | varying}
    differing = {name: (lean.headers.get(name), full.headers.get(name)) for name in names
                 if lean.headers.get(name) != full.headers.get(name)}
    assert not differing, differing
    assert ("server-timing" in lean.headers) == ("server-timing" in full.headers)


def test_a_key_gets_the_same_answers_on_the_lean_path(servers):
    for index, (method, path, options, who) in enumerate(SAME_ANSWERS):
        headers = {**options.get("headers", {}), **_authorization(servers, who),
                   "X-Request-ID": f"same-{index}"}
        rest = {k: v for k, v in options.items() if k != "headers"}
        lean = _call(servers.lean, method, path, headers=headers, **rest)
        full = _call(servers.full, method, path, headers=headers, **rest)
        where = f"{method} {path} ({who})"
        assert lean.status_code == full.status_code, (where, lean.text, full.text)
        varying = set()
        if lean.status_code == 201:  # a new id and time each: the same fields
            assert lean.json().keys() == full.json().keys(), where
            varying.add("content-length")
        else:
            assert lean.content == full.content, where
        if not path.startswith("/api/"):
            # The one difference: outside /api/ the full chain's MFA redirect check reads
            # request.user, so SessionMiddleware marks the answer as varying by cookie. It
            # does not: a key's answer never depends on a cookie.
            assert "Cookie" in full.headers.get("vary", "") and "Cookie" not in lean.headers.get("vary", "")
            varying.add("vary")
        assert lean.headers["content-type"].startswith("application/json"), where
        assert lean.headers["x-request-id"] == full.headers["x-request-id"] == f"same-{index}"
        _same_headers(lean, full, varying)
    # The security headers API answers had before are all there.
    answer = _call(servers.lean, "GET", "/api/v1/namespaces/demo", headers=servers.bearer("agent"))
    for header in ("x-frame-options", "x-content-type-options", "referrer-policy",
                   "cross-origin-opener-policy"):
        assert header in answer.headers, header
    assert re.search(r"app;dur=[0-9.]+", answer.headers["server-timing"])


def test_the_lean_path_runs_no_session_or_csrf_middleware(servers):
    """A stale session cookie: SessionMiddleware, where it runs, deletes it (and says the
    answer varies by cookie). A POST to a plain view: CsrfViewMiddleware, where it runs,
    refuses it before the view (403) — the lean path reaches the view (404)."""
    stale = {"Cookie": "sessionid=stale"}
    for method, path in (("GET", "/api/v1/memories?limit=1"), ("GET", "/v1/memories")):
        lean = _call(servers.lean, method, path, headers={**servers.bearer("agent"), **stale})
        full = _call(servers.full, method, path, headers={**servers.bearer("agent"), **stale})
        assert lean.status_code == full.status_code == 200
        assert "set-cookie" not in lean.headers and "cookie" not in lean.headers.get("vary", "").lower()
        assert _session_cookie(full).startswith('sessionid=""')
        assert "Cookie" in full.headers["vary"]
    lean = _call(servers.lean, "POST", "/api/v1/no-such-route", json={}, headers=servers.bearer("agent"))
    full = _call(servers.full, "POST", "/api/v1/no-such-route", json={}, headers=servers.bearer("agent"))
    assert lean.status_code == 404 and lean.json()["error"]["code"] == "not_found"
    assert full.status_code == 403 and full.json()["error"]["code"] == "permission_denied"
    # No key, or not an API path: the full chain on the lean server too.
    for headers, path in (({}, "/api/v1/memories"), (servers.bearer("agent"), "/accounts/login/")):
        answer = _call(servers.lean, "GET", path, headers={**headers, **stale})
        assert _session_cookie(answer), path


def _session_cookie(response: httpx.Response) -> str:
    """The Set-Cookie of the session ("" if none): deleted or replaced, SessionMiddleware ran."""
    return next((value for value in response.headers.get_list("set-cookie")
                 if value.startswith("sessionid=")), "")


def _log_in(server: DaphneServer, username: str) -> httpx.Client:
    """A browser's session through allauth's form (its CSRF token included)."""
    client = httpx.Client(base_url=server.url, timeout=60)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    done = client.post("/accounts/login/", data={"login": username, "password": PASSWORD,
                                                 "csrfmiddlewaretoken": token})
    assert done.status_code == 302 and "sessionid" in client.cookies, done.text
    return client


def test_a_session_keeps_the_full_chain_and_a_bearer_header_never_logs_it_in(servers):
    alice = _log_in(servers.lean, "alice")
    listed = alice.get("/api/v1/namespaces")
    assert listed.status_code == 200 and [n["slug"] for n in listed.json()] == ["demo"]
    refused = alice.post("/api/v1/memories", json={"content": "from the session"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    for credential in ("Bearer mw_live_not-a-real-key", "Bearer", "bearer"):
        for method, path in (("GET", "/api/v1/namespaces"), ("POST", "/api/v1/memories")):
            answer = alice.request(method, path, json={"content": "x"} if method == "POST" else None,
                                   headers={"Authorization": credential})
            assert answer.status_code == 401, (credential, method, answer.text)
    # With a real key the key acts, never the person: alice is in demo, the key in other.
    as_key = alice.get("/api/v1/namespaces", headers=servers.bearer("elsewhere"))
    assert [n["slug"] for n in as_key.json()] == ["other"]

    # MFA: a superuser without TOTP has a session that may do nothing; a Bearer header
    # beside it is the key's request or a 401, never the superuser's.
    root = _log_in(servers.lean, "root")
    assert root.get("/api/v1/namespaces").status_code == 403
    assert root.get("/api/v1/namespaces", headers={"Authorization": "Bearer x"}).status_code == 401
    as_key = root.get("/api/v1/namespaces", headers=servers.bearer("elsewhere"))
    assert as_key.status_code == 200 and [n["slug"] for n in as_key.json()] == ["other"]


def test_a_streamed_answer_still_streams(servers):
    """The export streams its lines (the handler closes a streaming answer after its body)."""
    for server in (servers.lean, servers.full):
        with httpx.stream("GET", f"{server.url}/api/v1/export?namespace=demo", timeout=60,
                          headers=servers.bearer("admin")) as answer:
            assert answer.status_code == 200 and "content-length" not in answer.headers
            lines = [json.loads(line) for line in answer.iter_lines() if line]
        assert lines and "manifest" in json.dumps(lines[-1])


def _counter(server: DaphneServer, view: str) -> float:
    text = _call(server, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    pattern = (r'^django_http_responses_total_by_status_view_method_total\{method="GET",'
               rf'status="200",view="{re.escape(view)}"\}} ([0-9.]+)$')
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_metrics_still_count_lean_api_calls(servers):
    view = "tenancy-api:namespace"
    before = _counter(servers.lean, view)
    for _ in range(3):
        assert _call(servers.lean, "GET", "/api/v1/namespaces/demo",
                     headers=servers.bearer("agent")).status_code == 200
    assert _counter(servers.lean, view) == before + 3


def test_revocation_in_the_server_is_at_once_elsewhere_within_the_window(servers):
    """The key cache: revoked through the API (this process), refused at the next call;
    revoked by a data fix in another process, refused once MEMORYWEB_KEY_CACHE_SECONDS
    (5 s by default) have passed since the server last read it."""
    doomed = servers.bearer("doomed")
    assert _call(servers.lean, "GET", "/api/v1/namespaces/demo", headers=doomed).status_code == 200
    keys = _call(servers.lean, "GET", "/api/v1/namespaces/demo/keys", headers=servers.bearer("admin"))
    key_id = next(k["id"] for k in keys.json() if k["agent_id"] == "doomed")
    assert _call(servers.lean, "DELETE", f"/api/v1/namespaces/demo/keys/{key_id}",
                 headers=servers.bearer("admin")).status_code == 204
    assert _call(servers.lean, "GET", "/api/v1/namespaces/demo", headers=doomed).status_code == 401

    leaver = servers.bearer("leaver")
    assert _call(servers.lean, "GET", "/api/v1/namespaces/demo", headers=leaver).status_code == 200
    read_at = time.monotonic()  # the server remembers the key from about now
    manage(servers.env, "shell", "-c", REVOKE_LEAVER)
    time.sleep(max(0.0, read_at + 5.5 - time.monotonic()))
    assert _call(servers.lean, "GET", "/api/v1/namespaces/demo", headers=leaver).status_code == 401
