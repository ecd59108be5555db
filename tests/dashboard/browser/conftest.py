"""A real browser against a real server: Chromium (Playwright) driving a Daphne process.

One Daphne server (its own data directory, SQLite and embedded Chroma) and one browser
serve every test of the module. The server is a separate process, so its data is made
the way an operator would: ``migrate`` and the management commands (run in one
``manage.py shell`` to pay Django's start-up once), then agents store over REST.

Chromium is Debian's (/usr/bin/chromium), never a Playwright download; without it the
tests fail with a message saying so (CI installs it), they are not skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.servers import ROOT, DaphneServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "a-long-test-password-1"
#: Playwright's default for expect() and waits, in milliseconds (a 2-core CI box).
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)

#: One management-shell run: namespaces, people, keys. Prints one JSON line of keys.
SETUP = """
import io, json
from django.core.management import call_command
from django.contrib.auth import get_user_model

def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]

for slug in ("alpha", "beta"):
    run("create_namespace", slug)
run("add_member", "alpha", "alice", "--role", "admin", "--password", PASSWORD)
run("add_member", "beta", "bob", "--role", "admin", "--password", PASSWORD)
run("add_member", "alpha", "rita", "--role", "reader", "--password", PASSWORD)
get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
keys = {name: run("create_api_key", "--namespace", slug, "--role", role, "--agent-id", agent)
        for name, slug, role, agent in [
            ("alpha_agent", "alpha", "agent", "agent-1"),
            ("alpha_leaver", "alpha", "agent", "leaver-7"),
            ("alpha_admin", "alpha", "admin", "admin-1"),
            ("beta_agent", "beta", "agent", "beta-agent")]}
print("KEYS=" + json.dumps(keys))
"""


#: JavaScript shared by the layout checks: ``parse`` a CSS colour, its luminance ``lum``,
#: the opaque background ``behind`` an element, and the WCAG contrast ``ratio`` of two colours.
COLOUR_JS = """
  const parse = (c) => { const m = c && c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => { const f = (v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const behind = (el) => { for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return parse(getComputedStyle(document.documentElement).backgroundColor)
      || {r: 255, g: 255, b: 255, a: 1}; };
  const ratio = (fg, bg) => { const a = lum(fg), b = lum(bg);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
"""


@dataclass
class Site:
    """The running server, its API keys and the memories stored at start."""

    url: str
    keys: dict[str, str]
    memories: dict[str, dict] = field(default_factory=dict)
    storage: dict[str, dict] = field(default_factory=dict)  # username -> logged-in state

    def api(self, key: str, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1/{path}", timeout=30,
                             headers={"Authorization": f"Bearer {self.keys[key]}"}, **kwargs)

    def store(self, key: str, content: str, **fields) -> dict:
        response = self.api(key, "POST", "memories", json={"content": content, **fields})
        assert response.status_code == 201, response.text
        return response.json()


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """Daphne on a fresh data dir with alpha (alice is its team admin, rita a reader),
    beta (bob's) and a superuser root; memories stored over REST by their agents."""
    base = tmp_path_factory.mktemp("browser-site")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(base / "data"), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings"})
    _manage(env, "migrate", "-v0")
    out = _manage(env, "shell", "-c", SETUP.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    with DaphneServer(base / "daphne.log", env) as server:
        found = Site(url=server.url, keys=keys)
        for name, key, content, fields in [
            ("deploy", "alpha_agent", "The deploy key rotates every ninety days.", {"tags": ["ops"]}),
            ("lunch", "alpha_agent", "Lunch is at noon on Fridays.", {"kind": "preference"}),
            ("staging", "alpha_agent", "The staging database restarts every Sunday at midnight.", {}),
            ("leaver", "alpha_leaver", "Leaver seven keeps the spare badge in the blue drawer.", {}),
            ("beta", "beta_agent", "Beta's deploy secret lives in the walnut vault.", {"tags": ["ops"]}),
        ]:
            found.memories[name] = found.store(key, content, **fields)
        yield found


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless; one per module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(apt-get install chromium); the browser tests need it.", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def log_in(page, site: Site, username: str, password: str = PASSWORD) -> None:
    """Through allauth's form, as a person would; ends on the dashboard index."""
    page.goto(f"{site.url}/admin/")
    page.wait_for_url("**/accounts/login/**")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{site.url}/admin/")


@pytest.fixture
def person(site, browser):
    """``person("alice")``: a new browser context logged in as that person (through the
    form once per module, then from the saved cookies), returning its page."""
    contexts, problems = [], []

    def open_as(username: str):
        context = browser.new_context(viewport=VIEWPORT, base_url=site.url, accept_downloads=True,
                                      storage_state=site.storage.get(username))
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        watch(page, problems)
        if username not in site.storage:
            log_in(page, site, username)
            site.storage[username] = context.storage_state()
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert not problems, f"script errors or server errors in the browser: {problems}"


def watch(page, problems: list[str]) -> None:
    """Collect what a person would not see but should not happen: script errors, and
    answers of 500 and above from the server (a 404 may be what a test expects)."""
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("response", lambda response: response.status >= 500
            and problems.append(f"{response.status} {response.url}"))


@pytest.fixture
def anonymous_page(site, browser):
    context = browser.new_context(viewport=VIEWPORT, base_url=site.url)
    context.set_default_timeout(TIMEOUT_MS)
    page, problems = context.new_page(), []
    watch(page, problems)
    yield page
    context.close()
    assert not problems, f"script errors or server errors in the browser: {problems}"


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, "name")``: always taken; kept in docs/screenshots/ only when
    MEMORYWEB_SCREENSHOTS=1 (to refresh the committed images), else in the tmp dir."""
    folder = ROOT / "docs" / "screenshots" if os.environ.get("MEMORYWEB_SCREENSHOTS") == "1" \
        else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=False, type="png")
        assert path.stat().st_size > 1000, f"{path} looks empty"
        return path

    return take
