"""The connection guard (tests/plugins/connection_guard.py) fails, on SQLite too, a test
that runs ``close_old_connections()`` inside its own transaction — what only the
PostgreSQL pass would otherwise catch — and nothing else.

Small suites run in this process by pytester, on this test's database (a transactional
test, so the inner tests' atomic blocks are their own). This suite's own guard is set
aside meanwhile: the inner suite installs its own, and the violations are the inner
tests' to report.
"""

from __future__ import annotations

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

from tests.plugins import connection_guard

INNER = ["-p", "no:django", "-p", "no:cacheprovider", "-p", "no:xdist"]

INNER_TESTS = """
import threading

import pytest
from django.db import close_old_connections, connection, transaction


def test_swallowed_inside_an_atomic_block():
    with transaction.atomic():
        try:  # as fail-open code under test would: the guard must not rely on raising
            close_old_connections()
        except Exception:
            pass


def test_outside_any_atomic_block():
    connection.ensure_connection()
    connection.health_check_done = True
    close_old_connections()
    assert connection.health_check_done is False  # Django's own method still ran


def test_atomic_block_without_the_call():
    with transaction.atomic():
        assert connection.in_atomic_block


def test_a_thread_sharing_the_connection_is_not_flagged():
    connection.inc_thread_sharing()  # as Django's live server does for in-memory SQLite
    try:
        with transaction.atomic():
            other = threading.Thread(target=connection.close_if_unusable_or_obsolete)
            other.start()
            other.join()
    finally:
        connection.dec_thread_sharing()


@pytest.fixture
def tidied_in_a_transaction():
    with transaction.atomic():
        close_old_connections()


def test_fixture_tidies_inside_an_atomic_block(tidied_in_a_transaction):
    pass


def test_fails_anyway_inside_an_atomic_block():
    with transaction.atomic():
        close_old_connections()
        raise ValueError("the test's own failure")
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    pytester.makeconftest('pytest_plugins = ["tests.plugins.connection_guard"]')
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", connection_guard.ORIGINAL)
    return pytester


@pytest.mark.django_db(transaction=True)
def test_a_call_inside_an_atomic_block_fails_its_test_and_nothing_else(suite):
    result = suite.runpytest_inprocess(*INNER, "-rA")
    result.assert_outcomes(passed=3, failed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_inner.py::test_swallowed_inside_an_atomic_block*",
            "FAILED test_inner.py::test_fails_anyway_inside_an_atomic_block*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        ["ERROR test_inner.py::test_fixture_tidies_inside_an_atomic_block*"], consecutive=False
    )
    for passed in (
        "test_outside_any_atomic_block",
        "test_atomic_block_without_the_call",
        "test_a_thread_sharing_the_connection_is_not_flagged",
    ):
        result.stdout.fnmatch_lines([f"PASSED test_inner.py::{passed}"], consecutive=False)
    # The message, with the call's place and phase; once per flagged test (3), not more —
    # counted in the reports, above the short summary (which repeats it in full when the
    # CI variable is set: pytest does not truncate it there).
    output = result.stdout.str().split("short test summary info")[0]
    assert (
        output.count(
            "close_old_connections() ran inside the test's transaction: on "
            "PostgreSQL it closes the test's own connection; mark the test "
            "@pytest.mark.django_db(transaction=True)"
        )
        == 3
    )
    result.stdout.fnmatch_lines(
        ["*[[]during call[]]*", "*test_inner.py:*in test_swallowed_inside*"], consecutive=False
    )
    result.stdout.fnmatch_lines(["*[[]during setup[]]*", "*in tidied_in_a_transaction*"], consecutive=False)
    # The test's own error is kept, the message added to it.
    result.stdout.fnmatch_lines(["*ValueError: the test's own failure*"], consecutive=False)
    # The session put back what it wrapped.
    assert BaseDatabaseWrapper.close_if_unusable_or_obsolete is connection_guard.ORIGINAL


def test_the_guard_is_on_in_this_suite(request):
    assert request.config.stash.get(connection_guard.GUARD, None) is not None
    assert BaseDatabaseWrapper.close_if_unusable_or_obsolete is not connection_guard.ORIGINAL
    assert BaseDatabaseWrapper.close_if_unusable_or_obsolete.__wrapped__ is connection_guard.ORIGINAL
