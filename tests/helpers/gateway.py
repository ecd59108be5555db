"""A MemoryWeb server with its memory gateway pointed at the fake LLM API
(tests/helpers/fake_llm.py), for tests/gateway: Daphne on a fresh data directory with
namespaces ``alpha`` and ``beta``, keys of each role, upstream key files, and helpers to
store memories and set a namespace's memory mode over the REST API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.embedded import embedded_environment, manage_commands, migrate
from tests.helpers.fake_llm import FakeLLM
from tests.servers import DaphneServer

#: The server's upstream keys (in key files); they must reach the upstream, never a client.
OPENAI_SERVER_KEY = "sk-server-openai-Qm7Xv2Lp9Rt4"
ANTHROPIC_SERVER_KEY = "sk-ant-server-Hn3Wc8Yz5Kd1"
KEYS = {"alpha_agent": ("alpha", "agent"), "alpha_reader": ("alpha", "reader"),
        "alpha_admin": ("alpha", "admin"), "beta_agent": ("beta", "agent")}


@dataclass
class GatewaySite:
    url: str
    fake: FakeLLM
    keys: dict[str, str]
    memories: dict[str, str] = field(default_factory=dict)

    def store(self, key: str, content: str) -> str:
        answer = httpx.post(f"{self.url}/api/v1/memories", json={"content": content},
                            headers={"Authorization": f"Bearer {self.keys[key]}"}, timeout=60)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def set_memory_mode(self, namespace: str, value: dict) -> None:
        key = self.keys[f"{namespace}_admin"]
        answer = httpx.patch(f"{self.url}/api/v1/namespaces/{namespace}",
                             json={"memory_mode": value},
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.status_code == 200, answer.text

    @property
    def openai_base(self) -> str:
        return f"{self.url}/proxy/v1"

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/proxy/anthropic"


@contextlib.contextmanager
def gateway_site(base: Path, *, anthropic: bool = True, **extra: str) -> Iterator[GatewaySite]:
    """The fake upstream and Daphne (``anthropic=False``: the Anthropic upstream unset)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "openai.key").write_text(OPENAI_SERVER_KEY + "\n")
    (base / "anthropic.key").write_text(ANTHROPIC_SERVER_KEY + "\n")
    with FakeLLM() as fake:
        settings = {"MEMORYWEB_GATEWAY_OPENAI_URL": fake.openai_url,
                    "MEMORYWEB_GATEWAY_OPENAI_KEY_FILE": str(base / "openai.key"),
                    # Generous: the first recall loads the embedding model on a busy box.
                    "MEMORYWEB_GATEWAY_RECALL_BUDGET_MS": "30000",
                    # auto would extract with the fake upstream (the server has its key):
                    # the tests that want a model extractor say so.
                    "MEMORYWEB_GATEWAY_EXTRACTOR": "offline"}
        if anthropic:
            settings |= {"MEMORYWEB_GATEWAY_ANTHROPIC_URL": fake.anthropic_url,
                         "MEMORYWEB_GATEWAY_ANTHROPIC_KEY_FILE": str(base / "anthropic.key")}
        env = embedded_environment(base / "data", **(settings | extra))
        migrate(env)
        namespaces = sorted({namespace for namespace, _ in KEYS.values()})
        outputs = manage_commands(env, *(["create_namespace", slug] for slug in namespaces), *(
            ["create_api_key", "--namespace", namespace, "--role", role, "--agent-id", name]
            for name, (namespace, role) in KEYS.items()))
        keys = {name: out.splitlines()[-1]
                for name, out in zip(KEYS, outputs[len(namespaces):], strict=True)}
        with DaphneServer(base / "daphne.log", env) as server:
            yield GatewaySite(server.url, fake, keys)
