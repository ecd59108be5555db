"""The ``processes`` marker is true: every test that starts a process carries it, so
``make test-fast`` (``-m "not processes"``) starts none and stays fast.

Two checks, neither starting a process (they run in the fast loop they protect):

* the plugin's machinery, on small suites run in this process by pytester: a test using
  a process fixture is marked and left out by ``-m "not processes"``; an unmarked test
  that starts a process fails, naming it;
* the whole tree, read: a test whose code (or a helper or fixture it uses, in its module,
  a conftest, tests/helpers/ or tests/servers.py) starts a process is marked — also the
  ones skipped where the suite runs (no Redis, no PostgreSQL, no curl), which the
  runtime guard never sees.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.plugins import processes

TESTS = Path(__file__).resolve().parent
#: What starts a process when named in code (``sys.executable`` counts too: the child's
#: interpreter). Helpers and fixtures that use these count in their turn.
STARTERS = frozenset({"subprocess", "Popen", "create_subprocess_exec", "create_subprocess_shell",
                      "sync_playwright", "async_playwright", "stdio_client"})
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
INNER = ["-p", "no:django", "-p", "no:cacheprovider", "-p", "no:xdist"]


# --- 1. the plugin, on small suites ------------------------------------------------


@pytest.fixture
def suite(pytester, monkeypatch):
    """A pytester directory whose conftest loads the plugin. This test's own guard is
    set aside (the inner suite has its own): the inner tests name a program that does
    not exist, so nothing is started either way."""
    pytester.makeconftest('pytest_plugins = ["tests.plugins.processes"]')
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                     "markers =\n    processes: p\n    live_server: l\n")
    monkeypatch.setattr("subprocess.Popen.__init__", processes.POPEN_INIT)
    return pytester


INNER_TESTS = '''
import subprocess

import pytest

def _start():
    with pytest.raises(FileNotFoundError):
        subprocess.run(["/nonexistent/memoryweb-test-program"])

def test_in_process():
    assert 1 + 1 == 2

def test_uses_a_process_fixture(embedded_env):
    assert embedded_env["MEMORYWEB_ENV"] == "local"

@pytest.mark.live_server
def test_marked_with_the_older_name():
    pass

@pytest.mark.processes
def test_marked_and_starting():
    _start()

def test_unmarked_but_starting():
    _start()
'''


def test_fixture_users_and_the_older_marker_are_left_out_of_the_fast_loop(suite):
    suite.makepyfile(test_inner=INNER_TESTS)
    fast = suite.runpytest_inprocess(*INNER, "--collect-only", "-q", "-m", "not processes")
    fast.stdout.fnmatch_lines(["test_inner.py::test_in_process", "test_inner.py::test_unmarked_but_starting",
                               "2/5 tests collected (3 deselected)*"])
    slow = suite.runpytest_inprocess(*INNER, "--collect-only", "-q", "-m", "processes")
    slow.stdout.fnmatch_lines(["test_inner.py::test_uses_a_process_fixture",
                               "test_inner.py::test_marked_with_the_older_name",
                               "test_inner.py::test_marked_and_starting",
                               "3/5 tests collected (2 deselected)*"])


def test_an_unmarked_test_that_starts_a_process_fails_naming_it(suite):
    suite.makepyfile(test_inner=INNER_TESTS)
    result = suite.runpytest_inprocess(*INNER, "-k", "starting or in_process")
    # Its code passed; the guard fails it at teardown.
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*test_unmarked_but_starting started 1 process(es) without the 'processes' marker: "
        "*/nonexistent/memoryweb-test-program* (from *test_inner.py:7)*"])  # the line of _start()


# --- 2. the tree, read -------------------------------------------------------------


@dataclass
class Module:
    """What one file defines: its functions and classes (by the names they use), its
    fixtures (by the fixtures they request), its tests, and whether all are marked."""

    path: Path
    uses: dict[str, set[str]] = field(default_factory=dict)
    fixtures: dict[str, set[str]] = field(default_factory=dict)
    tests: list[ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=list)
    marked: bool = False


def _names(node: ast.AST) -> set[str]:
    """The names a definition uses, the starters among its attributes (``asyncio.
    create_subprocess_exec``), and ``sys.executable``."""
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            if child.attr in STARTERS:
                found.add(child.attr)
            if isinstance(child.value, ast.Name) and (child.value.id, child.attr) == ("sys", "executable"):
                found.add("sys.executable")
    return found


def _says_processes(node: ast.AST) -> bool:
    return any(isinstance(child, ast.Attribute) and child.attr in {"processes", "live_server"}
               for child in ast.walk(node))


def _parse(path: Path) -> ast.Module:
    """The file's syntax tree. CPython's AST constructor can raise a spurious SystemError
    ("recursion depth mismatch", gh-106905: seen with this machine's 3.11.7 in a threaded
    process) for a file that parses fine; it happened once in CI while an earlier test's
    background thread ran in the same worker. Parsed again then."""
    text = path.read_text()
    for attempt in range(3):
        try:
            return ast.parse(text, str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("not reached")


def _read(path: Path) -> Module:
    module = Module(path)
    for node in _parse(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "pytestmark"
                                                for target in node.targets):
            module.marked = _says_processes(node.value)
        elif isinstance(node, ast.ClassDef):
            module.uses[node.name] = _names(node)
            module.tests += [item for item in node.body
                             if isinstance(item, FUNCTIONS) and item.name.startswith("test_")]
        elif isinstance(node, FUNCTIONS):
            module.uses[node.name] = _names(node) - {node.name}
            if any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list):
                module.fixtures[node.name] = {argument.arg for argument in node.args.args}
            elif node.name.startswith("test_"):
                module.tests.append(node)
    return module


def _starting(uses: dict[str, set[str]]) -> set[str]:
    """The definitions that start a process: use a starter, or another such definition."""
    starting = set(STARTERS) | {"sys.executable"}
    while more := {name for name, used in uses.items() if used & starting} - starting:
        starting |= more
    return starting


def _unmarked_starters() -> list[str]:
    """Tests that start a process (in their code, or through the helpers and fixtures
    they use) without the marker, a process fixture, or a marked module."""
    shared = [_read(path) for path in [TESTS / "servers.py", *sorted((TESTS / "helpers").glob("*.py")),
                                       *sorted((TESTS / "plugins").glob("*.py"))]]
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        # What the module sees: shared helpers, then its conftests from the top down, then its own.
        seen = [*shared, *(_read(folder / "conftest.py") for folder in reversed(path.parents)
                           if folder.is_relative_to(TESTS) and (folder / "conftest.py").exists()),
                module := _read(path)]
        uses = {name: used for found in seen for name, used in found.uses.items()}
        fixtures = {name: wanted for found in seen for name, wanted in found.fixtures.items()}
        starting = _starting(uses)
        for test in module.tests:
            requested, queue = set(), [argument.arg for argument in test.args.args]
            while queue:  # the fixtures the test requests, and theirs
                if (name := queue.pop()) not in requested:
                    requested.add(name)
                    queue += fixtures.get(name, ())
            marked = module.marked or any(map(_says_processes, test.decorator_list)) \
                or bool(requested & processes.PROCESS_FIXTURES)
            if not marked and (_names(test) | requested) & starting:
                unmarked.append(f"{path.relative_to(TESTS.parent)}::{test.name}")
    return unmarked


def test_every_test_that_starts_a_process_is_marked():
    unmarked = _unmarked_starters()
    assert not unmarked, (
        "these tests start processes without the 'processes' marker: use a process fixture "
        f"({', '.join(sorted(processes.PROCESS_FIXTURES))}) or mark them "
        f"(pytestmark = pytest.mark.processes):\n" + "\n".join(unmarked))


def test_the_check_finds_an_unmarked_starter(tmp_path, monkeypatch):
    """The tree check above, on a tree with one test that calls a helper that calls a
    helper that starts ``manage.py``, and one whose fixture does: both reported."""
    (tmp_path / "helpers").mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "servers.py").write_text("")
    (tmp_path / "helpers" / "cli.py").write_text(
        "import subprocess, sys\n\ndef run(*args):\n    return subprocess.run([sys.executable, *args])\n\n"
        "def manage(*args):\n    return run('manage.py', *args)\n")
    (tmp_path / "test_planted.py").write_text(
        "import pytest\nfrom helpers.cli import manage\n\n@pytest.fixture\ndef migrated():\n"
        "    manage('migrate')\n\ndef test_calls(tmp_path):\n    manage('check')\n\n"
        "def test_through_a_fixture(migrated):\n    pass\n\n"
        "@pytest.mark.processes\ndef test_marked():\n    manage('check')\n\n"
        "def test_in_process(embedded_env):\n    assert embedded_env\n\n"
        "def test_nothing():\n    assert True\n")
    monkeypatch.setattr(f"{__name__}.TESTS", tmp_path)
    assert _unmarked_starters() == [f"{tmp_path.name}/test_planted.py::test_calls",
                                    f"{tmp_path.name}/test_planted.py::test_through_a_fixture"]
