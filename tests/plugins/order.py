"""The one long, light module first, so the workers finish together.

pytest-xdist (``--dist loadfile``) hands each worker a whole module at a time, in the
order of the collection; by default it sorts modules by their number of tests, which
puts the one-test schemathesis module (~170 s, mostly waiting on HTTP, about one core
between its CLI and its server) last, where one worker ran it alone at the end. It
starts first here, beside the many small modules. Putting every long, process-heavy
module first was tried (2026-12-05) and gave no clear gain: the embedded pass took
11 min 44 s with it and 11 min 59 s with schemathesis alone first (same tests, one CI
run each, clean clones), and the scaled pass 12 min 41 s with it against 8 min 5 s in
xdist's order a day earlier with ~55 fewer tests; long modules started together start
servers on both workers at once. The rest follow by number of tests, as xdist orders
them; the Makefile and ``tests/run_scaled.py`` pass ``--no-loadscope-reorder`` so xdist
keeps this order.
"""

from __future__ import annotations

from collections import Counter

import pytest

#: Started first, in this order (a missing module only costs time, never a result).
LONGEST = (
    "tests/schema/test_schemathesis.py",
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
