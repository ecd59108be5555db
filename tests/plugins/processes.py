"""Tests that start processes: their shared fixtures, the ``processes`` marker, a guard.

A test starts a process when it runs Daphne, a Chroma server, Chromium (Playwright),
``manage.py`` or an MCP server over stdio. Such a test takes seconds; ``make test-fast``
(``-m "not processes"``) leaves them out of the edit loop. The marker is given

- automatically, by ``pytest_collection_modifyitems`` below, to every test that uses a
  fixture of ``PROCESS_FIXTURES`` (directly or through another fixture), and to the
  tests marked ``live_server`` (the older name, still registered);
- explicitly (``pytestmark = pytest.mark.processes``, or the decorator on one test) to
  the tests that start a process without such a fixture.

An unmarked test that starts a process anyway fails (``no_unmarked_processes``), so the
marker stays true and the fast loop stays fast; ``tests/test_markers.py`` covers the
tests that are skipped where the suite runs (no Redis, no PostgreSQL).
"""

from __future__ import annotations

import os
import subprocess
import traceback
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.embedded import REDIS_URL, embedded_environment
from tests.servers import ChromaServer

#: Fixtures whose tests start processes. ``site``, ``browser`` and ``race`` are defined
#: beside their tests (tests/dashboard/browser/, tests/memories/test_ingest_races.py):
#: each starts Daphne (and Chromium) once per module.
PROCESS_FIXTURES = frozenset({"embedded_env", "chroma_server", "redis_prefix",
                              "site", "browser", "race"})
#: ``subprocess.Popen.__init__`` as Python has it (the guard wraps it during a test).
POPEN_INIT = subprocess.Popen.__init__
#: Library look-ups that run a program and are no process a test starts:
#: ``ctypes.util.find_library`` asks ``ldconfig -p`` (django-filter's schema code imports
#: django.contrib.gis, which looks for GDAL).
LOOKUPS = (os.path.join("ctypes", "util.py"),)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by the marks given here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use a process fixture, or the older ``live_server`` marker."""
    for item in items:
        if item.get_closest_marker("processes"):
            continue
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())) \
                or item.get_closest_marker("live_server"):
            item.add_marker(pytest.mark.processes)


@pytest.fixture(autouse=True)
def no_unmarked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test without the ``processes`` marker that starts a process (any
    ``subprocess.Popen``: ``subprocess.run``, asyncio's and anyio's subprocesses,
    Playwright's driver; not a library's ``LOOKUPS``). The process still runs; the test
    fails after it, naming the command and the innermost line of the project's code
    that started it."""
    if request.node.get_closest_marker("processes"):
        yield
        return
    started: list[str] = []
    real_init = subprocess.Popen.__init__
    root = str(request.config.rootpath)

    def noted(self: subprocess.Popen, args: object, *more: object, **kwargs: object) -> None:
        stack = traceback.extract_stack()[:-1]
        if not any(frame.filename.endswith(LOOKUPS) for frame in stack):
            where = [f"{frame.filename}:{frame.lineno}" for frame in stack
                     if frame.filename.startswith(root) and "site-packages" not in frame.filename
                     and frame.filename != __file__]
            started.append(f"{args!r} (from {where[-1] if where else 'outside the project'})")
        real_init(self, args, *more, **kwargs)

    subprocess.Popen.__init__ = noted
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real_init
    if started:
        pytest.fail(f"{request.node.nodeid} started {len(started)} process(es) without the "
                    f"'processes' marker: {started[0]}. Use a process fixture "
                    f"({', '.join(sorted(PROCESS_FIXTURES))}) or mark it "
                    "(pytestmark = pytest.mark.processes).", pytrace=False)


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    """The environment of an embedded deployment on the test's own (empty) data
    directory, for ``manage.py`` and Daphne processes. ``migrate(env)``
    (tests/helpers/embedded.py) gives it the migrated databases."""
    return embedded_environment(tmp_path / "data")


@pytest.fixture
def chroma_server(tmp_path, settings, monkeypatch) -> Iterator[ChromaServer]:
    """The process-wide vector store, pointed at a real Chroma server we control."""
    from apps.memories import vectorstore

    server = ChromaServer(tmp_path / "chroma-server", tmp_path / "chroma.log")
    server.start()
    settings.CHROMA_URL = server.url
    monkeypatch.setattr(vectorstore, "_store", vectorstore.VectorStore(vectorstore.make_client()))
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A prefix of this test's own on the shared Redis, which must answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for the scaled live test: {exc}")
    return f"mwtest-{uuid.uuid4().hex[:8]}"
