"""Management commands beside a running embedded server (tests/ops/test_commands_beside_server.py,
tests/server/test_control_socket.py): a command's result, a deployment with keys, facts to store."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import ROOT

FACTS = ["The staging deploy needs the VPN.", "Backups run at 02:00 UTC every night.",
         "The on-call rota changes on Mondays.", "Grafana lives at grafana.internal.",
         "The API rate limit is 480 requests per minute."]


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """A management command in its own process; fails the test with its output if it fails."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def set_up_keys(env: dict[str, str]) -> dict[str, str]:
    """A migrated data directory with the namespaces ``demo`` and ``copy``; keys by name:
    agent, admin and reader of demo, admin of copy (``copy``), and a system admin."""
    migrate(env)
    keys = {"agent": ("demo", "agent"), "admin": ("demo", "admin"), "copy": ("copy", "admin"),
            "reader": ("demo", "reader")}
    outputs = manage_commands(
        env, ["create_namespace", "demo"], ["create_namespace", "copy"],
        *(["create_api_key", "--namespace", ns, "--role", role, "--agent-id", f"{name}-bot"]
          for name, (ns, role) in keys.items()),
        ["create_api_key", "--system-admin"])
    found = {name: out.splitlines()[-1] for name, out in zip(keys, outputs[2:-1], strict=True)}
    found["system"] = outputs[-1].splitlines()[-1]
    return found
