"""The OpenAPI schema says what the server does: schemathesis against a real Daphne.

Every operation of ``/api/schema/`` (MemoryWeb's REST API and the drop-in routes under
``/cmm/`` and ``/v1/``) is run with schema-valid and schema-invalid requests, with every
check (``-c all``): no 5xx, every status and body documented, valid requests accepted,
invalid ones refused, deleted things gone. Twice: with an agent key (what most callers
hold) and with a system-admin key (the admin routes). The system key belongs to no
namespace, so no generated call can revoke it; it works in a namespace of its own
(``scratch``) besides ``gamma``, and may delete either: it runs last.

Bounded: a fixed seed (MEMORYWEB_SCHEMATHESIS_SEED to try another) and a time budget
per key (MEMORYWEB_SCHEMATHESIS_SECONDS). Rules OpenAPI cannot state (ordered dates, a
namespace the key must name) are listed in tests/schema/st_hooks.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.embedded import manage_commands, migrate
from tests.servers import ROOT, DaphneServer

pytestmark = pytest.mark.processes  # Daphne, manage.py and the schemathesis CLI
SEED = os.environ.get("MEMORYWEB_SCHEMATHESIS_SEED", "16017")
SECONDS = os.environ.get("MEMORYWEB_SCHEMATHESIS_SECONDS", "75")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
AGENT_ID = "bot"
SYSTEM_AGENT_ID = "root"

CONFIG = """\
# One worker: with two, hypothesis in one thread raised the recursion limit while the other
# parsed a lambda's source, and Python 3.11's parser failed ("AST constructor recursion
# depth mismatch") - the "generator recursion" an earlier review saw on a few operations.
workers = 1
request-timeout = 60

[generation]
max-examples = 25
# OpenAPI 3.0 cannot say "no NUL" about metadata keys; every string refuses U+0000
# (docs/api.md), checked by the validation tests instead.
allow-x00 = false
database = "none"

[cache]
enabled = false

[dictionaries.namespaces]
values = {namespaces}

[dictionaries.agents]
values = ["{agent}"]

# DELETE revokes a grant or a key: the row stays as the record of what was shared or
# issued, readable (and its key's expiry editable) with its revoked state (docs/tenancy.md),
# so a read after it is not the use after free this check looks for.
[[operations]]
include-path-regex = '^/api/v1/namespaces/[^/]+/(grants|keys)/[^/]+$'
checks.use_after_free.enabled = false

# Values the server holds: the caller's namespaces and its own agent id.
[parameters]
"path.slug" = {{ dictionary = "namespaces", probability = 0.6 }}
"query.namespace" = {{ dictionary = "namespaces", probability = 0.5 }}
"body.namespace" = {{ dictionary = "namespaces", probability = 0.5 }}
"body.agent_id" = {{ dictionary = "agents", probability = 0.9 }}
"body.agent" = {{ dictionary = "agents", probability = 0.9 }}
"body.memories[*].agent" = {{ dictionary = "agents", probability = 0.9 }}
"body.queries[*].agent" = {{ dictionary = "agents", probability = 0.9 }}
"""


def _run(url: str, key: str, namespaces: list[str], agent: str, work: Path) -> tuple[int, str]:
    work.mkdir()
    config = work / "schemathesis.toml"
    config.write_text(CONFIG.format(namespaces=str(namespaces).replace("'", '"'), agent=agent))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schema.st_hooks",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/api/schema/",
         "-H", f"Authorization: Bearer {key}", "--seed", SEED,
         "--max-time", SECONDS, "--no-color", "--report", "junit",
         "--report-dir", str(work / "report")],
        cwd=work, env=env, capture_output=True, text=True, timeout=int(SECONDS) * 3 + 300)
    (work / "schemathesis.out").write_text(done.stdout + done.stderr)
    return done.returncode, done.stdout + done.stderr


# The server here is always the embedded one, so the scaled pass of CI (make test-scaled)
# would repeat the same minutes for nothing.
@pytest.mark.skipif(bool(os.environ.get("CHROMA_URL")), reason="runs once, in the embedded "
                    "pass (its server is the embedded one in every pass)")
def test_openapi_schema_matches_behaviour(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}  # embedded
    env.update({"MEMORYWEB_DATA_DIR": str(tmp_path / "data"), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                # thousands of requests in a minute: the rate limits are not under test here
                "MEMORYWEB_RATE_LIMIT": "", "MEMORYWEB_TOKEN_RATE": "1000000/min"})
    migrate(env)  # a copy of the worker's migrated template, as ``migrate`` would leave it
    outputs = manage_commands(  # one Django start for the four commands
        env, *(["create_namespace", slug] for slug in ("gamma", "scratch")),
        ["create_api_key", "--namespace", "gamma", "--role", "agent", "--agent-id", AGENT_ID],
        ["create_api_key", "--system-admin", "--agent-id", SYSTEM_AGENT_ID])
    agent_key, system_key = (out.splitlines()[-1] for out in outputs[2:])

    with DaphneServer(tmp_path / "daphne.log", env) as server:
        schema = httpx.get(f"{server.url}/api/schema/?format=json", timeout=60).json()
        operations = sum(method in {"get", "post", "put", "patch", "delete"}
                         for item in schema["paths"].values() for method in item)
        assert any(path.startswith("/cmm/") for path in schema["paths"])
        assert any(path.startswith("/v1/") for path in schema["paths"])
        results = [
            ("agent", *_run(server.url, agent_key, ["gamma"], AGENT_ID, tmp_path / "agent")),
            ("system", *_run(server.url, system_key, ["scratch", "gamma"], SYSTEM_AGENT_ID,
                             tmp_path / "system")),
        ]
    log = (tmp_path / "daphne.log").read_text()
    for caller, code, output in results:
        tested = re.search(r"Tested: (\d+)", output)
        assert code == 0, f"schemathesis with the {caller} key failed:\n{output[-20000:]}"
        assert tested and int(tested.group(1)) == operations, output[-3000:]
    assert "Traceback" not in log, log[-5000:]
