"""Run the whole test suite in the scaled mode: PostgreSQL, a Chroma server, Redis.

``make test-scaled`` calls this. It starts a Chroma server (the ``chroma`` CLI from the
chromadb package) on a free port in a temporary directory, points the suite at it with
CHROMA_URL, at PostgreSQL with DATABASE_URL (default: the local ``test`` database on
127.0.0.1:5432) and at Redis with REDIS_URL (default 127.0.0.1:6379), runs pytest with
any arguments given, and stops the Chroma server. Tests that start only embedded
deployments or servers of their own, and use no database here, are left out: they ran
the same in the embedded pass (tests/plugins/passes.py; MEMORYWEB_TEST_PASS=all keeps them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import ChromaServer


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="memoryweb-scaled-") as work:
        chroma = ChromaServer(Path(work) / "chroma", Path(work) / "chroma.log")
        chroma.start()
        try:
            env = dict(os.environ)
            env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
            env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
            env["CHROMA_URL"] = chroma.url
            # Tests that run the same programs in both passes ran in the embedded one
            # (tests/plugins/passes.py); MEMORYWEB_TEST_PASS=all runs them here too.
            env.setdefault("MEMORYWEB_TEST_PASS", "scaled")
            print(f"scaled mode: DATABASE_URL={env['DATABASE_URL']} CHROMA_URL={chroma.url} "
                  f"REDIS_URL={env['REDIS_URL']}", flush=True)
            return subprocess.call([sys.executable, "-m", "pytest", *argv], env=env)
        finally:
            chroma.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
