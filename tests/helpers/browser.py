"""What the browser tests (tests/dashboard/browser/) share besides fixtures: the people's
password, Playwright's timeout and viewport, the management-shell set-up of a site, the
running ``Site``, colour JavaScript for the layout checks, and small page helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "a-long-test-password-1"
#: Playwright's default for expect() and waits, in milliseconds (a 2-core CI box).
TIMEOUT_MS = 10_000

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


def watch(page, problems: list[str]) -> None:
    """Collect what a person would not see but should not happen: script errors, and
    answers of 500 and above from the server (a 404 may be what a test expects)."""
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("response", lambda response: response.status >= 500
            and problems.append(f"{response.status} {response.url}"))


def click_submit(button) -> None:
    """Click a button that submits a form named by its ``form`` attribute, first saying
    clearly if it has none (an HTML parser drops a <form> nested in another, so a button
    naming it belongs to no form and a click does nothing)."""
    action = button.evaluate("b => b.form ? b.form.getAttribute('action') : null")
    assert action, (f"{button.evaluate('b => b.outerHTML')} submits no form: "
                    "its form is missing from the page (nested in the admin's own <form>?)")
    button.click()
