"""``manage.py capture``: conversation events from stdin into a MemoryWeb server.

A thin door to the hook client (memoryweb_capture/, standard library only, the same
code the agent hooks run), used by hand: it reports instead of staying silent, so a
missing ``MEMORYWEB_API_KEY`` exits 2 and refused input or events exit 1 with the
reasons. Events still go over HTTP to ``--server-url`` (the server's write path, its
auth and its redaction), never straight into this process's database: capture is a
client, and the server may be another machine. See docs/capture.md.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from memoryweb_capture.cli import main
from memoryweb_capture.events import FORMATS


class Command(BaseCommand):
    help = ("Read conversation events on stdin (JSON lines, or a hook payload with --format "
            "claude-code|codex), redact secrets, and send them to POST /api/v1/events with "
            "MEMORYWEB_API_KEY; what the server cannot take now waits in the local spool "
            "(docs/capture.md).")

    def add_arguments(self, parser):
        parser.add_argument("--server-url", help="MemoryWeb's base URL (else MEMORYWEB_SERVER_URL, "
                                                 "default http://127.0.0.1:8000)")
        parser.add_argument("--format", choices=FORMATS, default="jsonl",
                            help="what stdin holds (default: jsonl, one event per line)")
        parser.add_argument("--namespace", help="namespace slug, for system-admin keys "
                                                "(else MEMORYWEB_NAMESPACE)")
        parser.add_argument("--timeout", type=float, help="seconds on the network (else "
                                                          "MEMORYWEB_CAPTURE_TIMEOUT, default 2)")
        parser.add_argument("--flush", action="store_true", help="read no input: send the spool only")
        parser.add_argument("--requeue-rejected", action="store_true",
                            help="move the rejected file's events back into the spool first")
        parser.add_argument("--verbose", action="store_true", help="also write the capture log to stderr")
        parser.add_argument("payload", nargs="?", help="a payload as an argument instead of stdin")

    def handle(self, *args, **opts):
        argv = ["--format", opts["format"]]
        for name in ("server_url", "namespace", "timeout"):
            if opts.get(name) is not None:
                argv += [f"--{name.replace('_', '-')}", str(opts[name])]
        argv += [f"--{flag.replace('_', '-')}" for flag in ("flush", "requeue_rejected", "verbose")
                 if opts.get(flag)]
        if opts.get("payload") is not None:
            argv.append(opts["payload"])
        code = main(argv, interactive=True, stdout=self.stdout, stderr=self.stderr,
                    prog="manage.py capture")
        if code:
            raise CommandError("capture did not complete (see above)", returncode=code)
