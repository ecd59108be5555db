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
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.helpers.browser import PASSWORD, SETUP, TIMEOUT_MS, VIEWPORT, Site, watch
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import ROOT, DaphneServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """Daphne on a fresh data dir with alpha (alice is its team admin, rita a reader),
    beta (bob's) and a superuser root; memories stored over REST by their agents."""
    base = tmp_path_factory.mktemp("browser-site")
    env = embedded_environment(base / "data")
    migrate(env)
    out = manage(env, "shell", "-c", SETUP.replace("PASSWORD", repr(PASSWORD)))
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
