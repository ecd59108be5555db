"""The longest modules first, so the workers finish together.

pytest-xdist (``--dist loadfile``) hands each worker a whole module at a time, in the
order of the collection; by default it sorts modules by their number of tests, which
puts a module of one long test (the schemathesis run, ~170 s) last, and one worker then
runs it alone while the other has finished. Here the modules known to take longest
start first; the rest follow by number of tests, as xdist would order them. The
Makefile and ``tests/run_scaled.py`` pass ``--no-loadscope-reorder`` so xdist keeps
this order. A module missing from the list only costs time, never a result.
"""

from __future__ import annotations

from collections import Counter

import pytest

#: The slowest modules, slowest first (``--durations`` of a full run, summed per module).
LONGEST = (
    "tests/schema/test_schemathesis.py",
    "tests/server/test_backup.py",
    "tests/dashboard/browser/test_layouts.py",
    "tests/ops/test_commands_beside_server.py",
    "tests/server/test_lean_api_path.py",
    "tests/ops/test_scaled.py",
    "tests/mcp/test_stdio.py",
    "tests/dashboard/browser/test_gdpr_journey.py",
    "tests/tenancy/test_rate_budget_daphne.py",
    "tests/ops/test_daphne_server.py",
    "tests/live/test_live_daphne.py",
    "tests/dashboard/browser/test_bulk_jobs_browser.py",
    "tests/ops/test_crash.py",
)


def module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reorder whole modules (a module's tests keep their order and stay together)."""
    sizes = Counter(module_of(item) for item in items)
    rank = {module: index for index, module in enumerate(LONGEST)}
    items.sort(key=lambda item: (rank.get(module_of(item), len(LONGEST)),
                                 -sizes[module_of(item)], module_of(item)))
