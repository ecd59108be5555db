"""A MemoryWeb server whose PostgreSQL database a test can cut or hang: Daphne on a fresh
database reached through a loopback TcpProxy (tests/servers.py), its gateway's OpenAI
upstream a FakeLLM. For the gateway's fail-open tests (tests/gateway/test_fail_open_*)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import psycopg

from tests.helpers.embedded import embedded_environment, manage_commands, migrate
from tests.helpers.fake_llm import FakeLLM
from tests.servers import DaphneServer, TcpProxy

POSTGRES = os.environ.get("MEMORYWEB_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
METRICS_TOKEN = "metrics-token-fail-open-db-4Kq9"
FALCON = "The deploy script for project Falcon lives in tools/deploy.sh."
QUESTION = "Where does the deploy script for project Falcon live?"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}


@dataclass
class Site:
    url: str
    fake: FakeLLM
    keys: dict[str, str]
    database: TcpProxy
    log: Path
    env: dict[str, str]
    database_name: str = ""

    def new_key(self, agent: str) -> str:
        """A new agent key of ``alpha`` (the database must be up), kept as ``keys[agent]``."""
        out = manage_commands(self.env, ["create_api_key", "--namespace", "alpha", "--role",
                                         "agent", "--agent-id", agent])[0]
        self.keys[agent] = out.splitlines()[-1]
        return self.keys[agent]

    @property
    def openai_base(self) -> str:
        return f"{self.url}/proxy/v1"

    def client(self, agent: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.openai_base, api_key=self.keys[agent], max_retries=0,
                             timeout=60)

    def gateway_back(self) -> None:
        """Wait (at most 30 s) until the gateway uses the database again after an earlier
        test's outage: for a moment after a failure it leaves the database alone (its
        breaker), admitting known keys from memory and answering unknown ones 503."""
        deadline = time.monotonic() + 30
        while True:
            answer = httpx.post(self.openai_base + "/chat/completions", json=BODY, timeout=60,
                                headers={"authorization": f"Bearer {self.keys['writer']}"})
            if answer.status_code == 200 and "x-memory-fail-open" not in answer.headers:
                return
            assert time.monotonic() < deadline, answer.headers.get("x-memory-fail-open")
            time.sleep(0.5)

    def fail_open_count(self, route: str, reason: str) -> float:
        """The counter's value now, from /metrics (0 before its first increment)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30,
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        for line in text.splitlines():
            if (line.startswith("memoryweb_gateway_fail_open_total{") and f'route="{route}"' in line
                    and f'reason="{reason}"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@contextmanager
def database_site(base: Path, agents: tuple[str, ...], **settings: str) -> Iterator[Site]:
    """Daphne on a fresh PostgreSQL database reached through a TcpProxy, its gateway's
    OpenAI upstream a FakeLLM, namespace ``alpha`` with a key per agent (the first,
    ``writer``, has stored FALCON); ``settings`` for the server. The database is dropped
    after."""
    name = f"mw_gateway_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.start()
    (base / "openai.key").write_text("sk-server-openai-Db7Yx2\n")
    try:
        with FakeLLM() as fake:
            env = embedded_environment(
                base / "data", DATABASE_URL=f"postgres://postgres@127.0.0.1:{proxy.port}/{name}",
                MEMORYWEB_GATEWAY_OPENAI_URL=fake.openai_url,
                MEMORYWEB_GATEWAY_OPENAI_KEY_FILE=str(base / "openai.key"),
                MEMORYWEB_GATEWAY_EXTRACTOR="offline", MEMORYWEB_METRICS_TOKEN=METRICS_TOKEN,
                **settings)
            migrate(env)
            outputs = manage_commands(env, ["create_namespace", "alpha"], *(
                ["create_api_key", "--namespace", "alpha", "--role", "agent", "--agent-id", agent]
                for agent in agents))
            keys = {agent: out.splitlines()[-1] for agent, out in zip(agents, outputs[1:], strict=True)}
            with DaphneServer(base / "daphne.log", env) as server:
                stored = httpx.post(f"{server.url}/api/v1/memories", json={"content": FALCON},
                                    headers={"Authorization": f"Bearer {keys['writer']}"}, timeout=60)
                assert stored.status_code == 201, stored.text
                yield Site(server.url, fake, keys, proxy, base / "daphne.log", env, name)
    finally:
        proxy.stop()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_recall_comes_back(site: Site) -> None:
    """With the database back, the writer's request gets FALCON injected again (the
    gateway tries the database a moment after its last failure)."""
    site.database.stop()
    site.database.start()
    deadline = time.monotonic() + 30
    while True:
        site.fake.reset()
        answer = site.client("writer").chat.completions.with_raw_response.create(**BODY)
        if answer.headers.get("x-memory-injected") == "1" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.headers["x-memory-injected"] == "1"
    assert "x-memory-fail-open" not in answer.headers
    assert FALCON in site.fake.last()["body"]["messages"][0]["content"]
