"""The command line of capture, for agent hooks and for ``manage.py capture``.

In a hook (the default) it never fails the agent: whatever happens (no key, a bad
payload, the server down, a bug here) it exits 0, prints nothing on stdout (Claude Code
adds a SessionStart or UserPromptSubmit hook's stdout to the conversation) and writes
what went wrong to the capture log (and stderr with ``--verbose``). Interactive use
(``--strict``, or ``manage.py capture``) reports instead: exit 2 without a key, 1 when
input or events were refused, a summary on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import IO, Any

from .client import Settings, capture, log, parse_timeout, requeue_rejected
from .events import FORMATS, Conversion, convert, iso, tool_chars_from_env, utc_now

#: ``--flush`` is run by hand: it may take longer than a hook.
FLUSH_TIMEOUT = 30.0

DESCRIPTION = """\
Capture an agent's conversation events into MemoryWeb: read a hook payload (or JSON
lines), redact secrets, spool locally, send to POST /api/v1/events. In a hook it always
exits 0 and prints nothing; problems go to the log beside the spool."""

EPILOG = """\
formats:
  claude-code  a Claude Code hook payload on stdin (SessionStart, UserPromptSubmit,
               PostToolUse, Stop, SessionEnd; other hook events are ignored)
  codex        a Codex notify payload: the JSON argument Codex appends (or stdin)
  jsonl        one event per line: {"event_type", "session_id", "text"?, "role"?,
               "occurred_at"?, "id"?, "metadata"?}

environment:
  MEMORYWEB_API_KEY           the key (required to send; without it events are spooled)
  MEMORYWEB_SERVER_URL        default http://127.0.0.1:8000
  MEMORYWEB_NAMESPACE         namespace slug, for system-admin keys (optional)
  MEMORYWEB_CAPTURE_TIMEOUT   seconds on the network per invocation (default 2)
  MEMORYWEB_CAPTURE_SPOOL     spool file (default ~/.memoryweb/spool.jsonl)
  MEMORYWEB_CAPTURE_LOG       log file (default capture.log beside the spool)
  MEMORYWEB_CAPTURE_TOOL_CHARS  characters kept of a tool's input and output (2000)
  MEMORYWEB_CAPTURE_SPOOL_MAX_MB  megabytes the spool keeps waiting (50); oldest dropped past it

examples:
  echo '{"event_type": "user_message", "session_id": "s1", "text": "hi"}' \\
      | python3 -m memoryweb_capture --format jsonl --strict
  python3 -m memoryweb_capture --flush --verbose     # send what the spool holds now
See docs/capture.md."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(message)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog or "python3 -m memoryweb_capture", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=FORMATS, default="jsonl",
                        help="what the input is (default: jsonl)")
    parser.add_argument("--server-url", help="MemoryWeb's base URL (else MEMORYWEB_SERVER_URL)")
    parser.add_argument("--namespace", help="namespace slug (else MEMORYWEB_NAMESPACE)")
    parser.add_argument("--timeout", type=float,
                        help="seconds on the network (else MEMORYWEB_CAPTURE_TIMEOUT, default 2; "
                             f"--flush: {FLUSH_TIMEOUT:.0f})")
    parser.add_argument("--flush", action="store_true", help="read no input: send the spool only")
    parser.add_argument("--requeue-rejected", action="store_true",
                        help="move the rejected file's events back into the spool first")
    parser.add_argument("--strict", action="store_true",
                        help="interactive: exit 2 without a key, 1 when anything was refused")
    parser.add_argument("--verbose", action="store_true", help="also write the log to stderr")
    parser.add_argument("payload", nargs="?",
                        help="the payload as an argument instead of stdin (Codex notify passes one)")
    return parser


def main(argv: list[str] | None = None, *, interactive: bool = False, stdin: IO[str] | None = None,
         stdout: Any = None, stderr: Any = None, environ: dict[str, str] | None = None,
         prog: str | None = None) -> int:
    """Run capture; returns the exit code (always 0 in a hook, see the module's docstring).
    ``stdout``/``stderr`` are where interactive use reports (``manage.py capture``
    passes its own); a hook writes to neither."""
    env = os.environ if environ is None else environ
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser(prog).parse_args(argv)
    except _UsageError as exc:
        if interactive or "--strict" in (argv if argv is not None else sys.argv[1:]):
            err.write(f"capture: {exc}\n")
            return 2
        log(Settings.from_env(env), f"bad arguments ({exc}); nothing captured")
        return 0
    strict = interactive or args.strict
    settings = Settings.from_env(env, server_url=args.server_url, namespace=args.namespace,
                                 timeout=_timeout(args, env), verbose=args.verbose)
    try:
        return _run(args, settings, strict=strict, stdin=stdin, out=out, err=err, env=env)
    except Exception:  # the agent must never see capture fail
        log(settings, "capture failed:\n" + traceback.format_exc())
        if strict:
            err.write("capture failed: " + traceback.format_exc().splitlines()[-1] + "\n")
            return 1
        return 0


def _timeout(args: argparse.Namespace, env: Any) -> float:
    if args.timeout is not None:
        return parse_timeout(str(args.timeout))
    if args.flush and not env.get("MEMORYWEB_CAPTURE_TIMEOUT"):
        return FLUSH_TIMEOUT
    return parse_timeout(env.get("MEMORYWEB_CAPTURE_TIMEOUT"))


def _run(args: argparse.Namespace, settings: Settings, *, strict: bool, stdin: IO[str] | None,
         out: Any, err: Any, env: Any) -> int:
    if not settings.api_key:
        if strict:
            err.write("capture: MEMORYWEB_API_KEY is not set; create a key with "
                             "`manage.py create_api_key --namespace SLUG --role agent --agent-id NAME` "
                             "and export it.\n")
            return 2
        log(settings, "MEMORYWEB_API_KEY is not set: events are spooled, not sent")
    if args.requeue_rejected:
        log(settings, f"requeued {requeue_rejected(settings)} rejected event(s)")
    conversion = Conversion()
    if not args.flush:
        raw = args.payload if args.payload is not None else _read(stdin)
        conversion = convert(args.format, raw, tool_chars=tool_chars_from_env(dict(env)))
        if conversion.errors:
            from .client import Spool

            now = iso(utc_now())
            Spool(settings).reject([{**error, "format": args.format, "rejected_at": now}
                                    for error in conversion.errors])
            for error in conversion.errors:
                log(settings, f"refused input {error['line']} ({args.format}): {error['error']}")
    report = capture(settings, conversion.events, send=bool(settings.api_key),
                     ignore_backoff=args.flush or strict)
    if conversion.events or report.sent or report.failure or report.rejected or args.verbose:
        log(settings, report.summary())
    if not strict:
        return 0
    out.write(report.summary() + "\n")
    refused = len(conversion.errors) + len(report.rejected)
    if refused:
        err.write(f"capture: {refused} refused; see {settings.rejected_path}\n")
        for error in conversion.errors[:5]:
            err.write(f"  input {error['line']}: {error['error']}\n")
        for record in report.rejected[:5]:
            err.write(f"  event {record.get('event', {}).get('id')}: {record.get('error')}\n")
        return 1
    return 0


def _read(stdin: IO[str] | None) -> str:
    """All of stdin as text (UTF-8 whatever the locale; undecodable bytes replaced)."""
    if stdin is not None:
        return stdin.read()
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin.read() if sys.stdin else ""
    return buffer.read().decode("utf-8", "replace")
