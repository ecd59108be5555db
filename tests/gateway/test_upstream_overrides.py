"""A namespace's own upstreams (its ``gateway`` setting, apps/gateway/namespace_setting.py):
set by a system admin only, key files named inside MEMORYWEB_GATEWAY_KEY_DIR, read at each
request, and the server's key never sent to a namespace's own URL. Over the wire with the
official SDKs against a real Daphne and two fake upstreams: the server's and the
namespace's own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from django.core.checks import Error
from django.test import override_settings

from apps.core.checks import check_gateway
from tests.helpers.embedded import embedded_environment, manage
from tests.helpers.fake_llm import REPLY, FakeLLM
from tests.helpers.gateway import OPENAI_SERVER_KEY, gateway_site

pytestmark = pytest.mark.processes

ALPHA_OPENAI_KEY = "sk-alpha-own-openai-Zt6Rb3"
ALPHA_ANTHROPIC_KEY = "sk-ant-alpha-own-Pw2Nc7"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    """Daphne with the server's upstreams (``site.fake``), a key directory, a second fake
    upstream that alpha may be pointed at, and a system admin key."""
    base = tmp_path_factory.mktemp("overrides")
    key_dir = base / "keys"
    key_dir.mkdir()
    (key_dir / "alpha-openai.key").write_text(ALPHA_OPENAI_KEY + "\n")
    (key_dir / "alpha-anthropic.key").write_text(ALPHA_ANTHROPIC_KEY + "\n")
    (base / "outside.key").write_text("sk-outside-the-key-dir\n")
    with FakeLLM() as own, gateway_site(base / "site", MEMORYWEB_GATEWAY_KEY_DIR=str(key_dir)) as site:
        env = embedded_environment(base / "site" / "data")
        root = manage(env, "create_api_key", "--system-admin", "--name", "root").splitlines()[-1]
        yield {"site": site, "own": own, "key_dir": key_dir, "root": root, "base": base}


@pytest.fixture
def fakes(world):
    world["site"].fake.reset()
    world["own"].reset()
    yield world["site"].fake, world["own"]
    _patch(world, "root", {"gateway": {}})  # back to the server's upstreams


def _patch(world, who: str, body: dict) -> httpx.Response:
    key = world["root"] if who == "root" else world["site"].keys[who]
    return httpx.patch(f"{world['site'].url}/api/v1/namespaces/alpha", json=body,
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _chat(world, key: str = "alpha_agent", **kwargs) -> str:
    client = openai.OpenAI(base_url=world["site"].openai_base, api_key=world["site"].keys[key],
                           max_retries=0, timeout=60, **kwargs)
    answer = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}])
    return answer.choices[0].message.content


def test_only_a_system_admin_sets_upstreams_and_team_admins_see_them(world, fakes):
    setting = {"upstreams": {"openai": {"url": world["own"].openai_url + "/",
                                        "key_file": "alpha-openai.key"}}}
    refused = _patch(world, "alpha_admin", {"gateway": setting})
    assert refused.status_code == 403, refused.text
    assert "only a system admin may change gateway.upstreams" in refused.json()["error"]["message"]
    read = httpx.get(f"{world['site'].url}/api/v1/namespaces/alpha", timeout=30,
                     headers={"Authorization": f"Bearer {world['site'].keys['alpha_admin']}"})
    assert read.json()["gateway"] == {}  # nothing changed

    done = _patch(world, "root", {"gateway": setting})
    assert done.status_code == 200, done.text
    # Normalised: the URL without its trailing slash.
    expected = {"upstreams": {"openai": {"url": world["own"].openai_url,
                                         "key_file": "alpha-openai.key"}}}
    assert done.json()["gateway"] == expected
    read = httpx.get(f"{world['site'].url}/api/v1/namespaces/alpha", timeout=30,
                     headers={"Authorization": f"Bearer {world['site'].keys['alpha_admin']}"})
    assert read.json()["gateway"] == expected
    # Readers and agents do not see where the namespace's prompts go, nor its key files.
    for key in ("alpha_reader", "alpha_agent"):
        seen = httpx.get(f"{world['site'].url}/api/v1/namespaces/alpha", timeout=30,
                         headers={"Authorization": f"Bearer {world['site'].keys[key]}"})
        assert seen.status_code == 200 and seen.json()["gateway"] == {}
    # A team admin may send the upstreams back unchanged, and change the rest (the trace).
    again = _patch(world, "alpha_admin", {"gateway": {**expected, "trace": "metadata"},
                                          "name": "Alpha"})
    assert again.status_code == 200, again.text
    assert again.json()["gateway"] == {**expected, "trace": "metadata"}
    # ... but dropping them is a change too.
    dropped = _patch(world, "alpha_admin", {"gateway": {"trace": "metadata"}})
    assert dropped.status_code == 403, dropped.text


@pytest.mark.parametrize("key_file, problem", [
    ("../outside.key", "bare file name"),
    ("/etc/passwd", "bare file name"),
    (".hidden", "bare file name"),
    ("missing.key", "no readable file 'missing.key'"),
])
def test_a_key_file_is_a_bare_name_of_a_readable_file_in_the_key_dir(world, fakes, key_file,
                                                                       problem):
    answer = _patch(world, "root", {"gateway": {"upstreams": {"openai": {"key_file": key_file}}}})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "gateway.upstreams.openai.key_file" in str(error)
    assert problem in str(error)
    read = httpx.get(f"{world['site'].url}/api/v1/namespaces/alpha", timeout=30,
                     headers={"Authorization": f"Bearer {world['root']}"})
    assert read.json()["gateway"] == {}


@pytest.mark.parametrize("url", ["ftp://example.com/v1", "https://user:pw@example.com/v1",
                                 "https://example.com/v1?key=1", "not a url"])
def test_a_namespace_url_is_a_plain_http_base_url(world, fakes, url):
    answer = _patch(world, "root", {"gateway": {"upstreams": {"anthropic": {"url": url}}}})
    assert answer.status_code == 400, answer.text
    assert "gateway.upstreams.anthropic.url" in str(answer.json()["error"])
    assert "user:pw" not in answer.text  # a refused URL's credentials are not echoed


def test_a_namespace_with_its_own_upstream_goes_there_with_its_own_key(world, fakes):
    server, own = fakes
    assert _patch(world, "root", {"gateway": {"upstreams": {"openai": {
        "url": own.openai_url, "key_file": "alpha-openai.key"}}}}).status_code == 200

    assert _chat(world) == REPLY
    assert server.requests == []
    sent = own.last()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {ALPHA_OPENAI_KEY}"

    # Another namespace still goes to the server's upstream with the server's key.
    assert _chat(world, "beta_agent") == REPLY
    assert server.last()["headers"]["authorization"] == f"Bearer {OPENAI_SERVER_KEY}"
    assert len(own.requests) == 1

    # The models route (no memory, no resolved namespace) follows the key's namespace.
    client = openai.OpenAI(base_url=world["site"].openai_base, max_retries=0, timeout=60,
                           api_key=world["site"].keys["alpha_agent"])
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4"]
    assert own.last()["path"] == "/v1/models"
    assert own.last()["headers"]["authorization"] == f"Bearer {ALPHA_OPENAI_KEY}"


def test_a_key_file_alone_keeps_the_servers_url(world, fakes):
    server, own = fakes
    assert _patch(world, "root", {"gateway": {"upstreams": {
        "anthropic": {"key_file": "alpha-anthropic.key"}}}}).status_code == 200
    client = anthropic.Anthropic(base_url=world["site"].anthropic_base, max_retries=0,
                                 timeout=60, api_key=world["site"].keys["alpha_agent"])
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "Hello there"}])
    assert message.content[0].text == REPLY
    assert own.requests == []
    assert server.last()["path"] == "/v1/messages"
    assert server.last()["headers"]["x-api-key"] == ALPHA_ANTHROPIC_KEY


def test_the_servers_key_never_goes_to_a_namespace_url(world, fakes):
    server, own = fakes
    assert _patch(world, "root", {"gateway": {"upstreams": {"openai": {
        "url": own.openai_url}}}}).status_code == 200
    assert _chat(world) == REPLY
    assert server.requests == []
    assert "authorization" not in own.last()["headers"]
    assert OPENAI_SERVER_KEY.encode() not in repr(own.requests).encode()

    # A client that brings its own upstream key sends it there.
    assert _chat(world, default_headers={"X-Upstream-Authorization": "Bearer sk-client"}) == REPLY
    assert own.last()["headers"]["authorization"] == "Bearer sk-client"


def test_a_key_file_is_read_at_each_request_and_an_unreadable_one_answers_503(world, fakes):
    server, own = fakes
    path = world["key_dir"] / "alpha-openai.key"
    assert _patch(world, "root", {"gateway": {"upstreams": {"openai": {
        "url": own.openai_url, "key_file": path.name}}}}).status_code == 200
    try:
        path.write_text("sk-alpha-rotated\n")
        assert _chat(world) == REPLY
        assert own.last()["headers"]["authorization"] == "Bearer sk-alpha-rotated"

        os.chmod(path, 0)
        if os.access(path, os.R_OK):  # root reads anything: take the file away instead
            path.rename(path.with_suffix(".gone"))
        with pytest.raises(openai.APIStatusError) as raised:
            _chat(world)
        assert raised.value.status_code == 503
        assert raised.value.body["type"] == "gateway_not_configured"
        assert "key file cannot be read" in raised.value.body["message"]
        assert len(own.requests) == 1 and server.requests == []
    finally:
        gone = path.with_suffix(".gone")
        if gone.exists():
            gone.rename(path)
        os.chmod(path, 0o600)
        path.write_text(ALPHA_OPENAI_KEY + "\n")


def test_the_key_dir_setting_is_checked(tmp_path):
    with override_settings(MEMORYWEB_GATEWAY_KEY_DIR=str(tmp_path / "nowhere")):
        messages = [m.msg for m in check_gateway() if isinstance(m, Error)]
    assert any(m.startswith("MEMORYWEB_GATEWAY_KEY_DIR must name a readable directory")
               for m in messages)
    with override_settings(MEMORYWEB_GATEWAY_KEY_DIR=str(tmp_path)):
        assert not [m for m in check_gateway() if "KEY_DIR" in m.msg]
