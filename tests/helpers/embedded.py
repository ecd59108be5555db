"""The embedded deployment as tests run it in other processes: its environment, its
management commands, and a migrated data directory that costs one ``migrate`` per test
process instead of one per server.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.servers import ROOT

#: The Redis the scaled tests share (keys, channel groups and job queue under a prefix).
REDIS_URL = os.environ.get("MEMORYWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: Variables that differ from one test to the next without changing what ``migrate``
#: writes: the data directory itself, pytest's note of the running test, and MemoryWeb's
#: settings except ``_SCHEMA_SETTINGS``. No migration's code reads a setting (only
#: ``AUTH_USER_MODEL`` for its dependencies) and the ``post_migrate`` receivers (content
#: types, permissions, django-guardian's anonymous user, memories/signals.py's orphan
#: keyword tables) read none of MemoryWeb's, so one template serves every module of a
#: worker whatever it sets (a template per combination of settings was 25 ``migrate``
#: runs of ~5 CPU seconds each in one pass, measured 2026-12-06).
_NOT_SCHEMA = frozenset({"MEMORYWEB_DATA_DIR", "PYTEST_CURRENT_TEST"})
#: MemoryWeb settings that do shape what start-up and ``migrate`` leave in the data
#: directory: the mode (a generated secret key file in local and test mode) and the
#: one path outside the data directory's defaults that the audit app writes. (So every
#: embedded deployment of a worker shares one generated secret key; none compares two.)
_SCHEMA_SETTINGS = frozenset({"MEMORYWEB_ENV", "MEMORYWEB_AUDIT_ANCHOR"})
_templates: dict[frozenset[tuple[str, str]], Path] = {}
_templates_lock = threading.Lock()


def embedded_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an embedded deployment on ``data_dir`` (SQLite and a local
    Chroma: the scaled mode's URLs are dropped) with production settings, not the test
    settings: what an operator's ``manage.py`` and Daphne see."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(data_dir), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings", **extra})
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py`` in its own process; its standard output, stripped. A failure fails
    the test with the command's error output."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip()


#: ``manage.py shell`` code: the commands of COMMANDS in order, one JSON line of outputs.
_COMMANDS = """
import io, json
from django.core.management import call_command
outputs = []
for arguments in json.loads(COMMANDS):
    out = io.StringIO()
    call_command(*arguments, stdout=out)
    outputs.append(out.getvalue().strip())
print("OUTPUTS=" + json.dumps(outputs))
"""


def manage_commands(env: dict[str, str], *commands: Sequence[str]) -> list[str]:
    """Several management commands in one ``manage.py shell``: one Django start instead
    of one per command (a second or two each), for a test's set-up; each command's
    standard output, stripped. Tests about a command's own process run it with
    ``manage``."""
    script = _COMMANDS.replace("COMMANDS", repr(json.dumps([list(command) for command in commands])))
    out = manage(env, "shell", "-c", script)
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("OUTPUTS="))[8:])


def migrate(env: dict[str, str]) -> None:
    """Give the empty data directory of ``env`` the migrated databases, as
    ``manage.py migrate`` would.

    The first call in a test process (one per xdist worker) with a given environment
    migrates a template directory; every call copies the template's files. Migrations
    read no setting but the database's, and write nothing that depends on the directory,
    so the copy is what the command would have made, for a process start and a
    migration less (seconds each, on every server test). A directory that already holds
    files, or a database elsewhere (DATABASE_URL), gets the real command. Tests about
    migrating itself call ``manage(env, "migrate")``.
    """
    target = Path(env["MEMORYWEB_DATA_DIR"])
    if env.get("DATABASE_URL") or (target.is_dir() and any(target.iterdir())):
        manage(env, "migrate", "-v0")
        return
    key = frozenset((k, v) for k, v in env.items() if k not in _NOT_SCHEMA
                    and (not k.startswith("MEMORYWEB_") or k in _SCHEMA_SETTINGS))
    with _templates_lock:
        template = _templates.get(key)
        if template is None:
            parent = tempfile.mkdtemp(prefix="memoryweb-migrated-")
            atexit.register(shutil.rmtree, parent, ignore_errors=True)
            template = Path(parent) / "data"
            # From the key's variables only, without the system checks: the template is
            # the same whichever test asks first (its settings are checked where it
            # starts its server or runs its commands).
            manage({**dict(key), "MEMORYWEB_DATA_DIR": str(template)},
                   "migrate", "-v0", "--skip-checks")
            _templates[key] = template
    shutil.copytree(template, target, dirs_exist_ok=True)
