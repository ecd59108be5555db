"""The scaled pass leaves out exactly the tests that run the same in both passes.

tests/plugins/passes.py, on a small suite run in this process by pytester: with
``MEMORYWEB_TEST_PASS=scaled`` (what ``tests/run_scaled.py`` sets) a test that starts
processes and uses no database of its own process is deselected and the summary says
why; a process test using the database (by fixture or marker), one marked ``scaled``,
and a test that starts nothing all stay. Without the variable, or with ``all``,
everything runs.
"""

from __future__ import annotations

import pytest

from tests.plugins import passes, processes

INNER = ["-p", "no:django", "-p", "no:cacheprovider", "-p", "no:xdist"]
INNER_TESTS = '''
import pytest

@pytest.fixture
def db():
    return "this process's database"

@pytest.fixture
def alpha(db):
    return "a namespace in it"

@pytest.mark.processes
def test_embedded_servers_only():
    pass

@pytest.mark.processes
def test_with_the_database_through_a_fixture(alpha):
    pass

@pytest.mark.processes
@pytest.mark.django_db
def test_with_the_database_by_marker():
    pass

@pytest.mark.processes
@pytest.mark.scaled
def test_takes_the_pass_backends_from_the_environment():
    pass

def test_in_process():
    pass
'''
EVERY = {"test_embedded_servers_only", "test_with_the_database_through_a_fixture",
         "test_with_the_database_by_marker",
         "test_takes_the_pass_backends_from_the_environment", "test_in_process"}


@pytest.fixture
def suite(pytester, monkeypatch):
    """A pytester directory whose conftest loads the two plugins (the process guard is
    set aside: nothing here starts a process)."""
    pytester.makeconftest('pytest_plugins = ["tests.plugins.processes", "tests.plugins.passes"]')
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n"
                     "    processes: p\n    live_server: l\n    scaled: s\n    django_db: d\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    monkeypatch.setattr("subprocess.Popen.__init__", processes.POPEN_INIT)
    return pytester


def _collected(result) -> set[str]:
    return {line.split("::")[-1] for line in result.outlines if "::" in line}


def test_the_scaled_pass_leaves_out_only_process_tests_without_a_database(suite, monkeypatch):
    monkeypatch.setenv(passes.PASS_VARIABLE, "scaled")
    collected = suite.runpytest_inprocess(*INNER, "--collect-only", "-q")
    assert _collected(collected) == EVERY - {"test_embedded_servers_only"}

    result = suite.runpytest_inprocess(*INNER)
    result.assert_outcomes(passed=4, deselected=1)
    result.stdout.fnmatch_lines(["scaled pass: 1 tests deselected: they start only embedded*"])


@pytest.mark.parametrize("value", [None, "all", "embedded"])
def test_every_other_pass_runs_everything(suite, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(passes.PASS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(passes.PASS_VARIABLE, value)
    result = suite.runpytest_inprocess(*INNER)
    result.assert_outcomes(passed=5)
    assert "scaled pass:" not in result.stdout.str()
