"""Every dashboard screen at a laptop's width (1366 px) and a phone's (375 px), in the
light and the dark theme (issue 17, acceptance): nothing runs off the side of the page,
and text stays readable against what is behind it.

"Runs off the side": the document is wider than the viewport, so a person must scroll
the whole page sideways. Wide tables scroll inside their own box instead (the admin's
``.results`` and the dashboard's tables do), which is allowed.

"Readable": each visible text element's colour against its effective background (the
first opaque background up its ancestors) has a WCAG contrast ratio of at least 3:1,
the large-text minimum: a bar, label or link that vanishes in dark mode fails it.

With MEMORYWEB_SCREENSHOTS=1 the screens are kept in docs/screenshots/ as
``<screen>-<width>-<theme>.png``.
"""

from __future__ import annotations

import pytest

from tests.helpers.browser import COLOUR_JS, TIMEOUT_MS

WIDTHS = {"1366": {"width": 1366, "height": 900}, "375": {"width": 375, "height": 812}}
THEMES = ["light", "dark"]
#: Minimum contrast (WCAG 2 "large text"/UI components).
MIN_CONTRAST = 3.0

#: (screen name, who looks, path or a callable giving one from the site).
SCREENS = [
    ("dashboard-index", "alice", "/admin/"),
    ("memory-list", "alice", "/admin/memories/memory/"),
    ("memory-search", "alice", "/admin/memories/memory/?q=deploy"),
    ("memory-change", "alice",
     lambda site: f"/admin/memories/memory/{site.memories['deploy']['id']}/change/"),
    ("memory-subject", "alice", "/admin/memories/memory/?subject_id=jane&match=any&q=deploy+lunch"),
    ("erasure-list", "alice", "/admin/privacy/erasurerequest/"),
    ("gdpr-export-form", "alice", "/admin/privacy/erasurerequest/export/"),
    ("gdpr-new-erasure", "alice", "/admin/privacy/erasurerequest/new/"),
    ("bulk-jobs", "alice", "/admin/memories/bulkjob/"),
    ("audit-list", "root", "/admin/audit/auditentry/"),
    ("overview", "alice", "/admin/dashboard/overview/"),
    ("playground", "alice", "/admin/dashboard/playground/"),
    ("live-feed", "alice", "/admin/dashboard/live/"),
    ("namespace", "alice", lambda site: "/admin/tenancy/namespace/"),
    ("forgetting", "alice", "/admin/dashboard/forgetting/"),
    ("namespace-merges", "root", "/admin/dashboard/namespace-merges/"),
]

#: Runs in the page: the widest overflow and the text elements with too little contrast.
CHECK = """
(minContrast) => {
""" + COLOUR_JS + """
  const poor = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const rect = el.getBoundingClientRect(), style = getComputedStyle(el);
    if (!rect.width || !rect.height || style.visibility === 'hidden' || style.opacity === '0') continue;
    const fg = parse(style.color); if (!fg || fg.a < 0.5) continue;
    const contrast = ratio(fg, behind(el));
    if (contrast < minContrast) poor.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}` +
      `.${[...el.classList].join('.')} "${el.textContent.trim().slice(0, 30)}" ${contrast.toFixed(2)}`);
  }
  return {scroll: document.documentElement.scrollWidth, poor: poor.slice(0, 10)};
}
"""


def _open(browser, site, person, username: str, width: str, theme: str):
    """A page logged in as ``username`` (cookies from the shared ``person`` login) at the
    given size and colour scheme."""
    person(username)  # logs in once per module and keeps the cookies in site.storage
    context = browser.new_context(viewport=WIDTHS[width], base_url=site.url, color_scheme=theme,
                                  storage_state=site.storage[username])
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("theme", THEMES)
def test_every_screen_fits_and_reads(browser, site, person, screenshot, width, theme):
    problems: list[str] = []
    pages: dict[str, object] = {}  # one browser context per person for all their screens
    try:
        for name, username, where in SCREENS:
            path = where(site) if callable(where) else where
            if username not in pages:
                pages[username] = _open(browser, site, person, username, width, theme)
            page = pages[username][1]
            response = page.goto(path)
            assert response is not None and response.status == 200, f"{name}: {path} answered " \
                f"{response.status if response else 'nothing'}"
            # The page with its stylesheets, images and fonts: what layout and contrast
            # depend on. Not "networkidle": the jobs pages poll their status every ~0.5 s,
            # so a quiet half-second may never come on a loaded machine (CI timed out).
            page.wait_for_load_state("load")
            page.evaluate("document.fonts.ready.then(() => true)")
            found = page.evaluate(CHECK, MIN_CONTRAST)
            if found["scroll"] > WIDTHS[width]["width"]:
                problems.append(f"{name} at {width} px ({theme}): the page is {found['scroll']} px wide")
            if found["poor"]:
                problems.append(f"{name} at {width} px ({theme}): low contrast: {found['poor']}")
            screenshot(page, f"{name}-{width}-{theme}")
    finally:
        for context, _ in pages.values():
            context.close()
    assert not problems, "\n".join(problems)
