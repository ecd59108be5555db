"""Send events to MemoryWeb without ever holding up the agent: a write-ahead spool.

Every invocation first appends its (redacted) events to the spool file, then, if no
other invocation is sending, sends the spool oldest first in batches of at most 100
and moves past what the server took. So the order is the order events were captured in,
an outage loses nothing (the events wait in the spool for the next hook), and a batch
whose answer was lost is simply sent again: event ids are deterministic and the server
stores each id once.

- Sending stops at the first failure (connection refused, timeout, 5xx, 429, a
  redirect), keeping that batch and everything after it; the whole invocation spends at
  most ``timeout`` seconds (``MEMORYWEB_CAPTURE_TIMEOUT``, default 2) on the network.
  After a timeout or a 429 the network is left alone for a while (the ``.state`` file),
  so a server that hangs does not cost every hook two seconds.
- A 4xx other than 408/425/429 means the server will never take the batch as it is: a
  batch refused with 400/413/422 is retried one event at a time, and each event still
  refused goes to ``spool.rejected.jsonl`` with the error (401/403/404 send the batch
  there at once), so one bad event never blocks the rest.
- The spool is bounded (``MEMORYWEB_CAPTURE_SPOOL_MAX_MB``, default 50): past it the
  oldest events are dropped, with a log line. Sending never rewrites it per batch: a
  ``.head`` file holds the offset of the first event waiting, a hook reads only the
  batches it sends, and the part sent is cut off now and then (``Spool.compact``), so a
  hook costs the same with a large spool as with a small one.
- Two locks (``fcntl.flock``): ``<spool>.lock`` around every read or rewrite of the
  spool (held for file I/O only) and ``<spool>.send.lock`` held by the one invocation
  that sends; an invocation that finds it taken leaves its events to the sender, who
  re-reads the spool until it is empty.

Standard library only (runs inside agent hooks with the system python3 ≥ 3.9).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .events import bounded, iso, utc_now
from .redact import redact, redact_value
from .spool import MB, Spool, append_file, open_private

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 2.0
TIMEOUT_RANGE = (0.1, 120.0)
#: Events per request when replaying, and the bytes a request's body stays under (the
#: server's default MEMORYWEB_MAX_BODY_BYTES is 2 MiB).
BATCH_SIZE = 100
BATCH_BYTES = 1_000_000
#: After a timeout or a 429 (without Retry-After), hooks leave the network alone this long.
BACKOFF_SECONDS = 15.0
BACKOFF_MAX = 300.0
LOG_MAX_BYTES = 1_000_000
#: The most the spool holds (MEMORYWEB_CAPTURE_SPOOL_MAX_MB): past it the oldest events
#: are dropped (and logged), so an outage or a missing key cannot fill the disk.
DEFAULT_SPOOL_MAX_MB = 50.0
SPOOL_MAX_MB_RANGE = (1.0, 10_000.0)
USER_AGENT = "memoryweb-capture/1"


class Settings:
    """Where to send and where to spool: environment variables, overridden by options."""

    def __init__(self, *, server_url: str = DEFAULT_SERVER_URL, api_key: str = "",
                 namespace: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 spool_path: Path | None = None, log_path: Path | None = None, verbose: bool = False,
                 spool_max_bytes: int = int(DEFAULT_SPOOL_MAX_MB * MB)):
        home = _home()
        self.server_url = server_url.rstrip("/")
        self.api_key = api_key
        self.namespace = namespace or None
        self.timeout = timeout
        self.spool_path = spool_path or home / "spool.jsonl"
        #: The log lives beside the spool unless MEMORYWEB_CAPTURE_LOG says otherwise.
        self.log_path = log_path or self.spool_path.with_name("capture.log")
        self.verbose = verbose
        self.spool_max_bytes = spool_max_bytes

    @property
    def rejected_path(self) -> Path:
        return self.spool_path.with_name(_stem(self.spool_path) + ".rejected.jsonl")

    @property
    def state_path(self) -> Path:
        return self.spool_path.with_name(self.spool_path.name + ".state")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, server_url: str | None = None,
                 namespace: str | None = None, timeout: float | None = None,
                 verbose: bool = False) -> Settings:
        env = os.environ if environ is None else environ
        spool = env.get("MEMORYWEB_CAPTURE_SPOOL", "").strip()
        log = env.get("MEMORYWEB_CAPTURE_LOG", "").strip()
        return cls(server_url=server_url or env.get("MEMORYWEB_SERVER_URL", "").strip() or DEFAULT_SERVER_URL,
                   api_key=env.get("MEMORYWEB_API_KEY", "").strip(),
                   namespace=namespace or env.get("MEMORYWEB_NAMESPACE", "").strip() or None,
                   timeout=timeout if timeout is not None
                   else parse_timeout(env.get("MEMORYWEB_CAPTURE_TIMEOUT")),
                   spool_path=Path(spool).expanduser() if spool else None,
                   log_path=Path(log).expanduser() if log else None, verbose=verbose,
                   spool_max_bytes=int(parse_spool_max_mb(env.get("MEMORYWEB_CAPTURE_SPOOL_MAX_MB")) * MB))


def _home() -> Path:
    try:
        return Path.home() / ".memoryweb"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        return Path(os.environ.get("TMPDIR", "/tmp")) / f"memoryweb-{uid}"


def _stem(path: Path) -> str:
    return path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name


def parse_timeout(raw: str | None) -> float:
    """MEMORYWEB_CAPTURE_TIMEOUT as seconds within TIMEOUT_RANGE; the default when unset
    or not a number."""
    try:
        value = float(raw) if raw not in (None, "") else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    if value != value:  # NaN
        return DEFAULT_TIMEOUT
    return min(max(value, TIMEOUT_RANGE[0]), TIMEOUT_RANGE[1])


def parse_spool_max_mb(raw: str | None) -> float:
    """MEMORYWEB_CAPTURE_SPOOL_MAX_MB as megabytes (MiB) within SPOOL_MAX_MB_RANGE; the
    default when unset or not a number (a hook has nobody to tell about a bad value)."""
    try:
        value = float(raw) if raw not in (None, "") else DEFAULT_SPOOL_MAX_MB
    except ValueError:
        return DEFAULT_SPOOL_MAX_MB
    if value != value:  # NaN
        return DEFAULT_SPOOL_MAX_MB
    return min(max(value, SPOOL_MAX_MB_RANGE[0]), SPOOL_MAX_MB_RANGE[1])


def log(settings: Settings, message: str) -> None:
    """A line in the capture log (and on stderr with --verbose). Never raises: the log
    is for the person wondering why an event is missing, not for the agent."""
    line = f"{iso(utc_now())} [{os.getpid()}] {message}\n"
    if settings.verbose:
        with contextlib.suppress(Exception):
            import sys

            sys.stderr.write(line)
    with contextlib.suppress(Exception):
        path = settings.log_path
        if path.exists() and path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        append_file(path, line.encode("utf-8", "replace"))


# -- HTTP -----------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (it would carry the key elsewhere): the batch stays."""

    def redirect_request(self, *args, **kwargs):
        return None


class Answer:
    """How the server answered one POST: ``status`` 0 for no answer at all."""

    def __init__(self, status: int, body: Any = None, error: str = "", retry_after: float | None = None):
        self.status, self.body, self.error, self.retry_after = status, body, error, retry_after

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        """The server will never take this batch as it is."""
        return 400 <= self.status < 500 and self.status not in (408, 425, 429)

    def describe(self) -> str:
        if self.status == 0:
            return self.error
        detail = self.body if isinstance(self.body, (dict, list)) else str(self.body or "")[:300]
        return f"HTTP {self.status}: {json.dumps(detail)[:500] if detail else self.error}"


def post_events(settings: Settings, events: list[dict[str, Any]], namespace: str | None,
                timeout: float) -> Answer:
    """One ``POST /api/v1/events`` that answers within ``timeout`` seconds; never raises.

    urllib's timeout bounds each socket operation, not the request: a server that
    trickles its answer could hold the hook far longer. The request runs in a daemon
    thread that is abandoned at the deadline (the process exits soon after; if the server
    did store the batch, sending it again stores nothing twice)."""
    box: list[Answer] = []
    worker = threading.Thread(target=lambda: box.append(_post(settings, events, namespace, timeout)),
                              daemon=True)
    worker.start()
    worker.join(max(timeout, 0.05) + 0.05)
    return box[0] if box else Answer(0, error=f"timeout: no answer within {timeout:.1f} s")


def _post(settings: Settings, events: list[dict[str, Any]], namespace: str | None,
          timeout: float) -> Answer:
    url = settings.server_url + "/api/v1/events"
    if namespace:
        url += "?" + urllib.parse.urlencode({"namespace": namespace})
    body = json.dumps({"events": events}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {settings.api_key}", "Content-Type": "application/json",
        "Accept": "application/json", "User-Agent": USER_AGENT})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=max(timeout, 0.05)) as response:
            return Answer(response.status, _json(response.read(1_000_000)))
    except urllib.error.HTTPError as exc:
        try:
            body = _json(exc.read(65536))
        except (OSError, http.client.HTTPException):
            body = None
        retry = exc.headers.get("Retry-After") if exc.headers else None
        return Answer(exc.code, body, str(exc.reason), retry_after=_seconds(retry))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        kind = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else "error"
        return Answer(0, error=f"{kind}: {reason}")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


# -- sending --------------------------------------------------------------------------------

def redact_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as it may leave the machine: text and every metadata value redacted."""
    out = dict(event)
    if isinstance(out.get("text"), str):
        out["text"] = redact(out["text"])
    if "metadata" in out:
        out["metadata"] = redact_value(out["metadata"])
    return out


class Report:
    """What one invocation did, for the log and for ``manage.py capture``'s exit code."""

    def __init__(self) -> None:
        self.spooled = 0
        self.sent = 0
        self.stored = 0
        self.existing = 0
        self.rejected: list[dict[str, Any]] = []
        self.dropped = 0
        self.pending = 0
        self.failure = ""
        self.skipped = ""
        #: Bytes of the spool read (the cost of a hook does not grow with the spool).
        self.bytes_read = 0

    def summary(self) -> str:
        text = (f"spooled {self.spooled}, sent {self.sent} (stored {self.stored}, existing "
                f"{self.existing}), rejected {len(self.rejected)}, waiting in the spool {self.pending}")
        if self.dropped:
            text += f", dropped {self.dropped} over the spool's cap"
        if self.failure:
            text += f"; stopped: {self.failure}"
        if self.skipped:
            text += f"; not sent: {self.skipped}"
        return text


def capture(settings: Settings, events: list[dict[str, Any]], *, send: bool = True,
            ignore_backoff: bool = False) -> Report:
    """Spool ``events`` (redacted) and send the spool; see the module's docstring."""
    report = Report()
    spool = Spool(settings)
    records = [{"namespace": settings.namespace, "spooled_at": iso(utc_now()), "event": redact_event(e)}
               for e in events]
    spool.append(records)
    report.spooled = len(records)
    deadline = time.monotonic() + settings.timeout
    wait = _backoff_left(settings) if send else 0.0
    if send and wait > 0 and not ignore_backoff:
        report.skipped = f"backing off for {wait:.0f} s more after a timeout or 429"
    if send and report.skipped == "":
        _send_all(settings, spool, deadline, report)
    else:  # no key, or backing off: the cap still holds
        with spool.sender() as held:
            if held:
                _enforce_cap(settings, spool, report)
                spool.compact()
    report.pending = spool.status().events
    report.bytes_read = spool.bytes_read
    return report


def _enforce_cap(settings: Settings, spool: Spool, report: Report) -> None:
    """Drop the oldest events past MEMORYWEB_CAPTURE_SPOOL_MAX_MB (the sender's lock held)."""
    dropped, size, total = spool.drop_oldest(settings.spool_max_bytes)
    if dropped:
        report.dropped += dropped
        log(settings, f"the spool is over its cap ({settings.spool_max_bytes / MB:g} MB, "
                      f"MEMORYWEB_CAPTURE_SPOOL_MAX_MB): dropped the {dropped} oldest event(s) "
                      f"({size} bytes) unsent; {total} dropped in all")


def _send_all(settings: Settings, spool: Spool, deadline: float, report: Report) -> None:
    """Drain the spool while this invocation holds the sender's lock; after letting it
    go, look again: events appended by an invocation that found the lock taken must not
    wait for the next hook."""
    while time.monotonic() < deadline:
        with spool.sender() as sending:
            if not sending:
                report.skipped = report.skipped or "another invocation is sending"
                return
            _enforce_cap(settings, spool, report)
            if not _drain(settings, spool, deadline, report):
                return  # a failure: the rest waits for the next invocation
        if spool.status().waiting_bytes <= 0:
            return


def _drain(settings: Settings, spool: Spool, deadline: float, report: Report) -> bool:
    """Send the spool from its head, oldest first, reading one batch at a time, and move
    the head past what the server took or refused for good (refused events are written
    to the rejected file first). False when a failure (or the deadline) stopped it."""
    position = spool.status().offset
    singles = 0  # events still to send one by one after a batch was refused
    failed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            failed, report.failure = True, report.failure or "time budget spent"
            break
        lines = spool.read_from(position, 1 if singles else BATCH_SIZE, BATCH_BYTES)
        if not lines:
            break
        text, size = lines[0]
        record = _record(text) if text else None
        if record is None:
            if text:  # redacted whole before it is cut (it may not be what we wrote)
                spool.reject([{"line": bounded(text, chars=2000), "error": "unreadable spool line",
                               "rejected_at": iso(utc_now())}])
            position += size
            spool.advance(position, 1 if text else 0)
            continue
        batch, batch_bytes = _batch(lines)
        events = [record["event"] for record in batch]
        answer = post_events(settings, events, batch[0].get("namespace"), left)
        if answer.ok:
            report.sent += len(batch)
            if isinstance(answer.body, dict):
                report.stored += _int(answer.body.get("stored"))
                report.existing += _int(answer.body.get("existing"))
        elif answer.rejected:
            if len(batch) > 1 and answer.status in (400, 413, 422):
                singles = len(batch)  # find the event the server refuses
                continue
            error = answer.describe()
            log(settings, f"rejected {len(batch)} event(s) ({error}): moved to {spool.rejected_path}")
            now = iso(utc_now())
            rejects = [{**record, "error": error, "rejected_at": now} for record in batch]
            spool.reject(rejects)
            report.rejected.extend(rejects)
        else:
            failed, report.failure = True, answer.describe()
            _note_failure(settings, answer)
            log(settings, f"server unavailable ({answer.describe()}); "
                          f"{spool.status().events} event(s) stay spooled")
            break
        position += batch_bytes
        spool.advance(position, len(batch))
        singles = max(0, singles - len(batch))
    spool.compact()
    if not failed:
        _clear_backoff(settings)
    return not failed


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("event"), dict) else None


def _batch(lines: list[tuple[str, int]]) -> tuple[list[dict[str, Any]], int]:
    """The consecutive readable records at the start of ``lines`` with one namespace,
    under BATCH_BYTES together (at least one), and the bytes they take in the spool."""
    batch: list[dict[str, Any]] = []
    total = 0
    for text, size in lines:
        record = _record(text) if text else None
        if record is None or (batch and (record.get("namespace") != batch[0].get("namespace")
                                         or total + size > BATCH_BYTES)):
            break
        batch.append(record)
        total += size
    return batch, total


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _backoff_left(settings: Settings) -> float:
    try:
        until = float(json.loads(settings.state_path.read_text()).get("retry_after", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0.0
    return max(0.0, until - time.time())


def _note_failure(settings: Settings, answer: Answer) -> None:
    """After a timeout or a 429, leave the network alone for a while (connection refused
    and 5xx answer fast: the next hook tries again)."""
    if answer.status == 429:
        pause = answer.retry_after if answer.retry_after is not None else BACKOFF_SECONDS
    elif answer.status == 0 and answer.error.startswith("timeout"):
        pause = BACKOFF_SECONDS
    else:
        return
    with contextlib.suppress(OSError):
        fd = open_private(settings.state_path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as handle:
            json.dump({"retry_after": time.time() + min(max(pause, 0.0), BACKOFF_MAX)}, handle)


def _clear_backoff(settings: Settings) -> None:
    with contextlib.suppress(OSError):
        settings.state_path.unlink()


def requeue_rejected(settings: Settings) -> int:
    """Move the rejected file's events back to the spool's end (after fixing the key or
    the server); the next send tries them again. Returns how many."""
    spool = Spool(settings)
    records = spool.take_rejected()
    spool.append([{"namespace": r.get("namespace"), "spooled_at": iso(utc_now()), "event": r["event"]}
                  for r in records])
    return len(records)
