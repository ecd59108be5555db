"""Backup, restore and crash tests: ``manage.py`` with its result, a demo namespace with a
system key, and every memory id a server lists."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import ROOT


def manage_process(env: dict[str, str], *args: str, stdin: str | None = None,
                   check: bool = True) -> subprocess.CompletedProcess:
    """``manage.py`` in its own process (up to 10 minutes: a backup under load), given
    ``stdin``; with ``check``, a failure fails the test with the command's output."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def set_up_demo(env: dict[str, str]) -> str:
    """A migrated data directory with the namespace ``demo``; a system admin key."""
    migrate(env)
    _, key = manage_commands(env, ["create_namespace", "demo"], ["create_api_key", "--system-admin"])
    return key.splitlines()[-1]


def all_ids(url: str, key: str) -> set[str]:
    """The ids of every memory in ``demo``, a page of 1000 at a time."""
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    ids, offset = set(), 0
    while True:
        page = client.get("/api/v1/memories", params={"namespace": "demo", "limit": 1000,
                                                       "offset": offset}).json()["results"]
        ids |= {m["id"] for m in page}
        if len(page) < 1000:
            return ids
        offset += 1000
