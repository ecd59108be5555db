"""The scaled pass runs what the backends change; what is the same in both passes runs once.

CI runs the suite twice (``.ci/run``): embedded (SQLite + a local Chroma) and scaled
(``tests/run_scaled.py``: PostgreSQL, a Chroma server, Redis). A test that starts
processes and does not use this process's database runs the same programs in both
passes: its servers are embedded deployments (``embedded_environment`` drops
DATABASE_URL, CHROMA_URL and REDIS_URL) or servers it starts itself (its own Chroma
server, PostgreSQL database, Redis prefix), whatever the pass. Those tests were 60 % of
the suite's time (1,297 of 2,163 test-seconds, measured 2026-12-06), so running them
twice doubled that time for nothing.

With ``MEMORYWEB_TEST_PASS=scaled`` (set by ``tests/run_scaled.py``) such tests are
deselected — pytest counts them as "deselected" in its summary, and a line below says
why (with pytest-xdist, the workers collect: each reports its count to the controller,
which prints the line). A process test whose programs do take the pass's backends from
the environment (a subprocess started with ``{**os.environ, ...}`` that reaches the
database, Chroma or Redis) must be marked ``scaled`` to be kept; none is today (reviewed
2026-12-06: the subprocesses that inherit the environment only read settings).
``MEMORYWEB_TEST_PASS=all`` runs everything under ``run_scaled.py``.
"""

from __future__ import annotations

import os

import pytest

#: pytest-django's fixtures that give a test this process's database.
DATABASE_FIXTURES = frozenset({"db", "transactional_db", "django_db_reset_sequences",
                               "django_db_serialized_rollback", "live_server"})
PASS_VARIABLE = "MEMORYWEB_TEST_PASS"


def same_in_both_passes(item: pytest.Item) -> bool:
    """Whether the test runs the same programs in the embedded and the scaled pass: it
    starts processes, uses no database of this process, and is not marked ``scaled``."""
    if not item.get_closest_marker("processes") or item.get_closest_marker("scaled"):
        return False
    if item.get_closest_marker("django_db"):
        return False
    return not DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))


@pytest.hookimpl(trylast=True)  # after tests/plugins/processes.py gave the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(PASS_VARIABLE) != "scaled":
        return
    kept, left = [], []
    for item in items:
        (left if same_in_both_passes(item) else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
    config.stash[_LEFT] = len(left)
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        config.workeroutput[_OUTPUT] = len(left)


_LEFT = pytest.StashKey[int]()
_OUTPUT = "memoryweb_scaled_pass_deselected"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the pytest-xdist controller (which collects nothing): every worker deselected
    the same tests, so any one's count is the pass's."""
    left = getattr(node, "workeroutput", {}).get(_OUTPUT)
    if left is not None:
        node.config.stash[_LEFT] = max(node.config.stash.get(_LEFT, 0), left)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    left = config.stash.get(_LEFT, 0)
    if left:
        terminalreporter.write_line(
            f"scaled pass: {left} tests deselected: they start only embedded deployments or "
            f"servers of their own and use no database here, so they ran the same in the "
            f"embedded pass ({PASS_VARIABLE}=all runs them here too; tests/plugins/passes.py)")
