"""Fail fast, on SQLite too, a test that runs ``close_old_connections()`` inside its
own transaction.

The gateway (``apps/gateway``: ``memory.admit``/``recall``, ``learning``,
``traces.record``) and other server code tidy their thread's database connection with
``django.db.close_old_connections()``, which asks every connection
``close_if_unusable_or_obsolete()``. Inside an atomic block that closes the connection
(its autocommit is off, unlike its settings). A plain ``@pytest.mark.django_db`` test
runs in such a block (pytest-django's per-test transaction): on PostgreSQL the test's
own connection is closed under it and the test fails, while SQLite's in-memory test
database ignores the close, so the embedded pass is green and only the scaled pass,
eighteen minutes later, says so.

This plugin wraps ``BaseDatabaseWrapper.close_if_unusable_or_obsolete`` for the test
session. A call on a connection in an atomic block (``in_atomic_block``: the hazard
itself on PostgreSQL, whichever thread makes it) is recorded, and the original method
runs unchanged. The phase (setup, call, teardown) in which it happened then fails with
``MESSAGE`` and where the call came from. Nothing is raised from inside the wrapped
method: code under test that catches ``Exception`` (fail-open paths, background loops)
would swallow it.

Nor is a call from a thread on a connection it only shares (Django's live server lends
in-memory SQLite's connection to its request threads, whose request_finished tidies it
while the test's flush holds an atomic block; PostgreSQL shares no connection). Calls
outside atomic blocks are not flagged: Channels' ``database_sync_to_async`` and
the lean ASGI handler run them on their own threads, whose connections are in no
transaction; Django's test client disconnects the request signals' calls.
"""

from __future__ import annotations

import functools
import os
import sysconfig
import threading
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

MESSAGE = (
    "close_old_connections() ran inside the test's transaction: on PostgreSQL it "
    "closes the test's own connection; mark the test "
    "@pytest.mark.django_db(transaction=True) (production calls this code outside "
    "any transaction)"
)
#: The method as Django defines it (a test of this plugin puts it back for its inner run).
ORIGINAL = BaseDatabaseWrapper.close_if_unusable_or_obsolete
#: Frames a violation names are relative to the project's root when under it.
ROOT = str(Path(__file__).resolve().parents[2])
HERE = os.path.realpath(__file__)
#: The standard library's directories: their frames (threading, contextlib) say nothing.
LIBRARIES = tuple(
    {os.path.realpath(sysconfig.get_paths()[name]) + os.sep for name in ("stdlib", "platstdlib")}
)
#: How many of the project's innermost frames a violation names.
FRAMES = 4


@dataclass(frozen=True)
class Violation:
    """One call on a connection in an atomic block: which connection, thread, and code."""

    alias: str
    thread: str
    where: tuple[str, ...]

    def describe(self) -> str:
        path = " <- ".join(self.where) or "(no project frame)"
        return f"connection {self.alias!r} on thread {self.thread!r}: {path}"


def _project_frames() -> tuple[str, ...]:
    """The innermost frames of the code under test and the tests (not the standard
    library, installed packages or this plugin), nearest the call first."""
    frames = []
    for frame in reversed(traceback.extract_stack()):
        filename = os.path.realpath(frame.filename)
        if filename == HERE or filename.startswith(LIBRARIES) or "site-packages" in filename:
            continue
        shown = os.path.relpath(filename, ROOT) if filename.startswith(ROOT + os.sep) else filename
        frames.append(f"{shown}:{frame.lineno} in {frame.name}")
        if len(frames) == FRAMES:
            break
    return tuple(frames)


@dataclass
class Guard:
    """The wrapped method's record for one session; installed and removed around it."""

    violations: list[Violation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    previous: Callable[[BaseDatabaseWrapper], None] | None = None

    def install(self) -> None:
        """Wrap the method as it is now (a plugin test may have put ``ORIGINAL`` back)."""
        previous = BaseDatabaseWrapper.close_if_unusable_or_obsolete
        self.previous = previous
        guard = self

        @functools.wraps(previous)
        def close_if_unusable_or_obsolete(connection: BaseDatabaseWrapper) -> None:
            # Its own connection: one shared with it (Django's live server on in-memory
            # SQLite lends the test's to its request threads) is another thread's
            # transaction, and on PostgreSQL not shared at all.
            if connection.in_atomic_block and connection._thread_ident == threading.get_ident():
                guard.record(Violation(connection.alias, threading.current_thread().name, _project_frames()))
            return previous(connection)

        BaseDatabaseWrapper.close_if_unusable_or_obsolete = close_if_unusable_or_obsolete

    def uninstall(self) -> None:
        if self.previous is not None:
            BaseDatabaseWrapper.close_if_unusable_or_obsolete = self.previous
            self.previous = None

    def record(self, violation: Violation) -> None:
        with self.lock:  # other threads (servers in-process) record too
            self.violations.append(violation)

    def take(self) -> list[Violation]:
        with self.lock:
            taken, self.violations = self.violations, []
        return taken


GUARD = pytest.StashKey[Guard]()


def report(violations: list[Violation], when: str) -> str:
    """The failure's text: the message, then each distinct call (once)."""
    lines = [f"{MESSAGE} [during {when}]"]
    lines += [f"  - {text}" for text in dict.fromkeys(v.describe() for v in violations)]
    return "\n".join(lines)


def pytest_sessionstart(session: pytest.Session) -> None:
    guard = Guard()
    guard.install()
    session.config.stash[GUARD] = guard


def pytest_sessionfinish(session: pytest.Session) -> None:
    guard = session.config.stash.get(GUARD, None)
    if guard is not None:
        guard.uninstall()


def _checked(item: pytest.Item, when: str) -> Generator[None, object, object]:
    """Run a phase, then fail it if a violation was recorded during it. A phase that
    failed anyway (on PostgreSQL, the closed connection) keeps its error, with the
    message added as a note."""
    guard = item.config.stash.get(GUARD, None)
    if guard is None:
        return (yield)
    if when == "setup":
        guard.take()  # what other threads did between tests is no test's
    try:
        result = yield
    except BaseException as exc:
        found = guard.take()
        if found and isinstance(exc, Exception):
            exc.add_note(report(found, when))
        raise
    found = guard.take()
    if found:
        pytest.fail(report(found, when), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _checked(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _checked(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _checked(item, "teardown"))
