"""MemoryWeb capture: agent hook payloads to conversation events, redacted, spooled, sent.

Runs inside coding-agent hooks (Claude Code, Codex ``notify``, anything that can write
JSON lines) with the system ``python3`` (3.9 or later) and the standard library only:
no Django, no third-party package, nothing to install beside the agent. See
docs/capture.md. ``python3 -m memoryweb_capture --help`` or
``python3 /path/to/memoryweb/memoryweb_capture --help``.
"""

__version__ = "1"
