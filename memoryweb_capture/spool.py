"""The capture spool on disk: an append-only JSONL file, its head offset, its locks.

Separate from the sending (``client.py``) because its one job is the guarantees of the
file itself: appends that survive a crash, a head that moves without rewriting the
file (so a hook's cost does not grow with the spool), a bound on what waits, and the
locks that let many hooks share it. Standard library only (runs inside agent hooks
with the system python3 ≥ 3.9).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no locking (one agent at a time is then assumed)
    fcntl = None  # type: ignore[assignment]

MB = 1024 * 1024
#: The spool is read in chunks of this size from its head, never whole on the hook path.
READ_CHUNK = 32 * 1024
#: The sent head of the spool is cut off (the rest rewritten) once it is this large and at
#: least half the size of what is still waiting; a spool sent to its end is truncated.
COMPACT_MIN_BYTES = MB
#: Bytes before the head offset kept in the ``.head`` file to recognise the file it
#: belongs to (a spool deleted and created again starts from its beginning).
HEAD_TAIL_BYTES = 32


def _private_dir(path: Path) -> None:
    """The spool's directory, created 0700 (a spool holds conversations)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def open_private(path: Path, flags: int) -> int:
    _private_dir(path.parent)
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
        os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def _flock(path: Path, *, wait: float | None):
    """An exclusive ``flock`` on ``path``: waiting up to ``wait`` seconds (None: as long
    as it takes), or not at all (0). Yields whether the lock is held."""
    fd = open_private(path, os.O_RDWR)
    held = fcntl is None
    try:
        if fcntl is not None:
            deadline = None if wait is None else time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                    break
                except OSError:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    time.sleep(0.005)
        yield held
    finally:
        if held and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _Head:
    """Where the spool's waiting part starts: ``offset`` bytes into the file (of inode
    ``ino``, ``size`` bytes long), ``events`` lines waiting after it, ``dropped`` events
    dropped over the cap so far."""

    __slots__ = ("dropped", "events", "ino", "offset", "size")

    def __init__(self, ino: int, size: int, offset: int, events: int, dropped: int):
        self.ino, self.size, self.offset, self.events, self.dropped = ino, size, offset, events, dropped

    @property
    def waiting_bytes(self) -> int:
        return self.size - self.offset


class Spool:
    """The JSONL spool: one ``{"namespace", "spooled_at", "event"}`` per line, oldest
    first; its rejected file beside it, one ``{…, "error", "rejected_at"}`` per line.

    What has been sent is skipped, not rewritten: ``<spool>.head`` holds the byte offset
    of the first line still waiting (with the file's inode and the bytes just before the
    offset, so it is never applied to another file: a head that does not match means
    "from the start", and the server's idempotent ids make that safe) and how many
    events wait. A hook reads the lines it sends, a chunk at a time, whatever the
    spool's size; the dealt-with head is cut off once it is large (``compact``), and a
    spool sent to its end is truncated. Only the sender (holding the send lock) moves
    the offset, drops events over the cap or compacts; everyone else appends."""

    def __init__(self, settings: Any):
        """``settings``: anything with ``spool_path`` and ``rejected_path`` (client.Settings)."""
        self.path: Path = settings.spool_path
        self.rejected_path: Path = settings.rejected_path
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.send_lock_path = self.path.with_name(self.path.name + ".send.lock")
        self.head_path = self.path.with_name(self.path.name + ".head")
        #: Bytes of the spool this object has read: what a hook costs, for the tests.
        self.bytes_read = 0

    def lock(self):
        """The spool's lock, for reading or changing it (30 s at most: it is held for file
        I/O only, so a longer wait means something is badly wrong)."""
        return _flock(self.lock_path, wait=30)

    def sender(self):
        """The sender's lock, not waited for: yields False when another invocation sends."""
        return _flock(self.send_lock_path, wait=0)

    @contextlib.contextmanager
    def _open(self):
        """The spool's lock held and the spool open (created empty if missing)."""
        with self.lock() as held:
            if not held:
                raise OSError(f"could not lock {self.lock_path}")
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
            try:
                yield fd
            finally:
                os.close(fd)

    def _read_at(self, fd: int, offset: int, size: int) -> bytes:
        os.lseek(fd, offset, os.SEEK_SET)
        parts = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        data = b"".join(parts)
        self.bytes_read += len(data)
        return data

    def _tail(self, fd: int, offset: int) -> str:
        start = max(0, offset - HEAD_TAIL_BYTES)
        return self._read_at(fd, start, offset - start).hex() if offset else ""

    def _head(self, fd: int) -> _Head:
        """The head as the ``.head`` file says, if it belongs to this file; else the start
        of the file, its lines counted (once: the head is saved by the next change)."""
        info = os.fstat(fd)
        try:
            meta = json.loads(self.head_path.read_text())
            offset, events, dropped = meta["offset"], meta["events"], meta.get("dropped", 0)
            if (meta.get("ino") == info.st_ino and all(type(v) is int for v in (offset, events, dropped))
                    and 0 <= offset <= info.st_size and self._tail(fd, offset) == meta.get("tail")):
                return _Head(info.st_ino, info.st_size, offset, max(0, events), dropped)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return _Head(info.st_ino, info.st_size, 0, self._count(fd, 0, info.st_size), 0)

    def _count(self, fd: int, start: int, end: int) -> int:
        """Lines between two offsets (a last one without its newline counts)."""
        count, last = 0, b"\n"
        while start < end:
            chunk = self._read_at(fd, start, min(MB, end - start))
            if not chunk:
                break
            count += chunk.count(b"\n")
            last, start = chunk[-1:], start + len(chunk)
        return count + (last != b"\n")

    def _save(self, fd: int | None, head: _Head) -> None:
        """Write the ``.head`` file (replaced whole: a reader sees the old or the new)."""
        meta = {"ino": head.ino, "offset": head.offset, "events": max(0, head.events),
                "dropped": head.dropped, "tail": self._tail(fd, head.offset) if fd is not None else ""}
        temporary = self.head_path.with_name(self.head_path.name + ".tmp")
        handle = os.fdopen(open_private(temporary, os.O_WRONLY | os.O_TRUNC), "w")
        with handle:
            json.dump(meta, handle)
        os.replace(temporary, self.head_path)

    def status(self) -> _Head:
        """The head now: events and bytes waiting (reads the ``.head`` file, not the spool)."""
        with self._open() as fd:
            return self._head(fd)

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = "".join(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                       for record in records).encode("utf-8", "surrogatepass")
        with self._open() as fd:
            head = self._head(fd)
            if head.size and self._read_at(fd, head.size - 1, 1) != b"\n":
                data = b"\n" + data  # a line cut short by a crash stays one bad line
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
            head.events += len(records)
            self._save(fd, head)

    def read(self) -> list[str]:
        """All the lines waiting (each a JSON record, or a damaged line to set aside).
        Reads the whole waiting part: for tools and tests, not for a hook's sending."""
        with self._open() as fd:
            head = self._head(fd)
            data = self._read_at(fd, head.offset, head.waiting_bytes)
        return [line for line in data.decode("utf-8", "replace").split("\n") if line.strip()]

    def read_from(self, offset: int, max_lines: int, max_bytes: int) -> list[tuple[str, int]]:
        """Up to ``max_lines`` lines from byte ``offset``, stopping once they reach
        ``max_bytes`` (at least one line): ``(text, bytes it takes)`` each, a blank line
        as ``""``. Reads in chunks of READ_CHUNK, never the rest of the spool."""
        lines: list[tuple[str, int]] = []
        total = 0
        buffer = b""
        with self._open() as fd:
            size = os.fstat(fd).st_size
            position = offset
            while len(lines) < max_lines and (not lines or total < max_bytes):
                newline = buffer.find(b"\n")
                if newline < 0:
                    chunk = self._read_at(fd, position, min(READ_CHUNK, size - position)) \
                        if position < size else b""
                    if chunk:
                        position += len(chunk)
                        buffer += chunk
                        continue
                    if not buffer:
                        break
                    newline = len(buffer) - 1  # the last line, without its newline
                raw, buffer = buffer[:newline + 1], buffer[newline + 1:]
                lines.append((raw.decode("utf-8", "replace").strip(), len(raw)))
                total += len(raw)
        return lines

    def advance(self, offset: int, events: int) -> None:
        """Move the head to ``offset``, past ``events`` events dealt with (sender only)."""
        with self._open() as fd:
            head = self._head(fd)
            head.offset, head.events = min(offset, head.size), head.events - events
            self._save(fd, head)

    def drop_oldest(self, max_bytes: int) -> tuple[int, int, int]:
        """Drop the oldest lines until at most ``max_bytes`` wait (sender only): the
        events dropped, their bytes and the events dropped in all. Reads only the part
        dropped."""
        with self._open() as fd:
            head = self._head(fd)
            target = head.offset + head.waiting_bytes - max_bytes
            if target <= head.offset:
                return 0, 0, head.dropped
            position, dropped = head.offset, 0
            while position < head.size:
                chunk = self._read_at(fd, position, min(head.size - position,
                                                        max(READ_CHUNK, target - position + 4096)))
                if not chunk:
                    break
                start, found = 0, False
                while True:
                    newline = chunk.find(b"\n", start)
                    if newline < 0:
                        break
                    dropped, start = dropped + 1, newline + 1
                    if position + start >= target:
                        found = True
                        break
                if found:
                    position += start
                    break
                if position + len(chunk) >= head.size and start < len(chunk):
                    dropped += 1  # a last line without its newline
                position += len(chunk)
            removed = position - head.offset
            head.offset, head.events = position, head.events - dropped
            head.dropped += dropped
            self._save(fd, head)
            return dropped, removed, head.dropped

    def compact(self) -> None:
        """Cut off the head dealt with (sender only): a spool sent to its end is truncated;
        otherwise the waiting part is rewritten once the head is COMPACT_MIN_BYTES or more
        and at least half its size (so each byte is copied a bounded number of times)."""
        with self._open() as fd:
            head = self._head(fd)
            if head.offset == 0:
                return
            if head.waiting_bytes <= 0:
                # The head first: a crash between the two sends the old lines again,
                # which the server stores once; the other order could skip new ones.
                self._save(None, _Head(head.ino, 0, 0, 0, head.dropped))
                os.ftruncate(fd, 0)
                return
            if head.offset < COMPACT_MIN_BYTES or head.offset * 2 < head.waiting_bytes:
                return
            data = self._read_at(fd, head.offset, head.waiting_bytes)
            temporary = self.path.with_name(self.path.name + ".tmp")
            try:
                with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # Until the new head is saved, the old one names the old inode: read as
                # "from the start" of the new file, which is where its lines begin.
                os.replace(temporary, self.path)
            except OSError:  # e.g. Windows, where an open file cannot be replaced
                with contextlib.suppress(OSError):
                    temporary.unlink()
                return
            self._save(None, _Head(os.stat(self.path).st_ino, len(data), 0, head.events, head.dropped))

    def reject(self, records: list[dict[str, Any]]) -> None:
        if records:
            data = "".join(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                           for record in records).encode("utf-8", "surrogatepass")
            with self.lock() as held:
                if not held:
                    raise OSError(f"could not lock {self.lock_path}")
                append_file(self.rejected_path, data)

    def take_rejected(self) -> list[dict[str, Any]]:
        """Empty the rejected file, returning its records (for ``--requeue-rejected``)."""
        with self.lock() as held:
            if not held:
                raise OSError(f"could not lock {self.lock_path}")
            records = []
            for line in _lines(self.rejected_path):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and isinstance(record.get("event"), dict):
                        records.append(record)
            if self.rejected_path.exists():
                self.rejected_path.unlink()
            return records


def append_file(path: Path, data: bytes) -> None:
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.decode("utf-8", "replace").split("\n") if line.strip()]
