"""API clients always get JSON errors; people's pages stay HTML (issue 16, item 14).

Unknown paths and wrong methods under ``/api/``, ``/mcp`` and the drop-in prefixes
(``/cmm/``, ``/v1/``) answered Django's HTML pages with DEBUG on (the technical 404) and
for ``/mcp/...`` in every mode. With a drop-in door mounted at the root (an empty
prefix) every path outside the HTML areas (``/admin/``, ``/accounts/``, static files)
belongs to that door, so its unknown paths answer JSON too.
"""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import DaphneServer

API_PATHS = ["/api/v1/nothing-here", "/v1/nothing-here", "/cmm/nothing-here", "/cmm/memory/",
             "/mcp/nothing-here", "/v1", "/cmm"]


def _json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize("path", API_PATHS)
def test_unknown_api_paths_are_json_404_in_every_mode(client, db, debug, path):
    _json_error(client.get(path), 404, "not_found")
    _json_error(client.post(path, "{}", content_type="application/json"), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [("get", "/v1/store"), ("get", "/cmm/ingest"),
                                              ("put", "/api/v1/recall"), ("delete", "/health")])
def test_wrong_methods_are_json_405(agent, debug, method, path):
    response = getattr(agent.client, method)(path)
    error = _json_error(response, 405, "method_not_allowed") if not path.startswith("/v1/") \
        else None
    if error is None:  # seed 003's error shape
        assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert response["Allow"]


@pytest.mark.parametrize("path", ["/accounts/nothing-here/", "/nothing-here/"])
def test_peoples_pages_stay_html(client, db, debug, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_the_admin_keeps_its_own_answers(client, db, debug):
    assert client.get("/admin/nothing-here/").status_code == 302  # to the login page
    assert client.get("/admin").status_code == 301  # the slash is appended as ever


def test_an_empty_drop_in_prefix_makes_the_root_the_doors_with_debug_on(embedded_env,
                                                                         tmp_path):
    env = {**embedded_env, "DEBUG": "true", "MEMORYWEB_CMM_PREFIX": ""}
    migrate(env)
    _, key = manage_commands(env, ["create_namespace", "demo"], [
        "create_api_key", "--namespace", "demo", "--role", "agent", "--agent-id", "bot-1"])
    with DaphneServer(tmp_path / "daphne.log", env) as server:
        for path in ("/nothing-here", "/memory/", "/v1/nothing-here", "/api/v1/nothing-here"):
            response = httpx.get(server.url + path)
            assert response.status_code == 404, (path, response.text[:200])
            assert response.headers["content-type"].startswith("application/json"), path
            assert response.json()["error"]["code"] == "not_found"
        wrong = httpx.get(server.url + "/ingest",  # seed 000's POST route, at the root
                          headers={"Authorization": f"Bearer {key}"})
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
        page = httpx.get(server.url + "/accounts/nothing-here/")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert httpx.get(server.url + "/admin/").status_code == 302
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}  # still MemoryWeb's
