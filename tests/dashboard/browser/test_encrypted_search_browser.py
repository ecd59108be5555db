"""The memory search box on an encrypted namespace, in a real browser (issue 23;
docs/dashboard.md, "Finding memories"): its keyword index holds blind tokens, and the
search still finds, highlights and counts its memories as in a plain namespace. The
module's own Daphne has an encrypted namespace ``vault`` (keeper is its team admin)
beside the shared fixtures' plain alpha and beta."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import PASSWORD, SETUP, Site
from tests.helpers.embedded import embedded_environment, manage, manage_commands, migrate
from tests.servers import DaphneServer


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("browser-encrypted-site")
    env = embedded_environment(base / "data")
    migrate(env)
    out = manage(env, "shell", "-c", SETUP.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    *_, agent = manage_commands(
        env, ["create_namespace", "vault", "--encrypted"],
        ["add_member", "vault", "keeper", "--role", "admin", "--password", PASSWORD],
        ["create_api_key", "--namespace", "vault", "--role", "agent", "--agent-id", "agent-v"])
    keys["vault_agent"] = agent.splitlines()[-1]
    with DaphneServer(base / "daphne.log", env) as server:
        found = Site(url=server.url, keys=keys)
        for text in ("The walnut vault holds the spare deploy key.",
                     "The walnut tree in the yard lost a branch.",
                     "Vault audits happen on Mondays."):
            found.store("vault_agent", text)
        found.store("alpha_agent", "The walnut vault of the plain namespace.")
        yield found


def test_the_search_box_finds_and_highlights_an_encrypted_namespaces_memories(person, site):
    page = person("keeper")
    page.goto("/admin/memories/memory/")
    page.fill("#searchbar", "walnut vault")
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=walnut\+vault"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)  # every word; the plain namespace's is not keeper's
    expect(page.locator("#result_list")).to_contain_text("holds the spare deploy key")
    expect(page.locator("#result_list mark").first).to_have_text(re.compile("walnut", re.I))
    expect(page.locator("#lookup-notice")).to_contain_text("1 match.")

    page.check("#match-any")
    page.click("#changelist-search input[type=submit]")
    expect(rows).to_have_count(3)
