"""bench/encryption.py keeps running: a tiny run end to end (issue 23's overhead bench).

The bench starts a real Daphne with a plain and an encrypted namespace (the hash embedder,
so no model is loaded) and, in its own process, stores a small LoCoMo-shaped conversation
in a plain and an encrypted namespace. The numbers of so small a run mean nothing; what is
checked is that every part ran, that the encrypted namespace really held ciphertext, and
that recall over blind tokens still finds the turn a question names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.processes

#: Each turn carries a word no other turn has; each question names one of them.
TURNS = [("Ana", "I adopted a greyhound named Quillbert last spring."),
         ("Ben", "Nice! I finally finished restoring the Marlowvane sailboat."),
         ("Ana", "My sister moved to Trondheim for her new job."),
         ("Ben", "I started taking pottery classes on Thursdays."),
         ("Ana", "We watched the Zephyrcast documentary about glaciers."),
         ("Ben", "My favourite snack is still salted plums.")]
QUESTIONS = [("What is the name of Ana's greyhound Quillbert?", "D1:1"),
             ("Which boat, the Marlowvane, did Ben restore?", "D1:2"),
             ("What documentary, Zephyrcast, did Ana watch?", "D2:2")]


def _locomo(path: Path) -> Path:
    """One conversation in LoCoMo's layout: two sessions, three questions."""
    sessions = {1: TURNS[:3], 2: TURNS[3:]}
    conversation: dict[str, object] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for n, turns in sessions.items():
        conversation[f"session_{n}"] = [{"speaker": who, "dia_id": f"D{n}:{i}", "text": text}
                                        for i, (who, text) in enumerate(turns, 1)]
        conversation[f"session_{n}_date_time"] = f"1:56 pm on {n} May, 2023"
    qa = [{"question": q, "answer": "-", "evidence": [e], "category": 4} for q, e in QUESTIONS]
    path.write_text(json.dumps([{"sample_id": "conv-t1", "conversation": conversation, "qa": qa}]))
    return path


# The bench runs its own embedded server whatever the pass, so the scaled pass of CI would
# repeat the same seconds for nothing.
@pytest.mark.skipif(bool(os.environ.get("CHROMA_URL")), reason="runs once, in the embedded "
                    "pass (the bench's server is the embedded one in every pass)")
def test_a_tiny_run_measures_both_parts(tmp_path):
    output = tmp_path / "out" / "encryption.json"
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env["MEMORYWEB_EMBEDDER"] = "bench.hash_embedder.HashEmbedder"  # the in-process LoCoMo part
    done = subprocess.run(
        [sys.executable, "bench/encryption.py", "--n", "60", "--block", "30", "--batch", "30",
         "--queries", "5", "--embedder", "hash", "--locomo-part", "both",
         "--locomo-data", str(_locomo(tmp_path / "locomo.json")), "--output", str(output)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert output.with_suffix(".png").stat().st_size > 0

    latency = report["latency"]
    assert latency["sealed_namespace_holds_ciphertext"] is True
    assert latency["ingest"]["memories_per_side"] == 60
    assert len(latency["ingest"]["blocks"]) == 2
    assert {b["first"] for b in latency["ingest"]["blocks"]} == {"plain", "sealed"}
    series = latency["recall"]["series"]
    assert sorted(series) == sorted(f"{side}_{mode}" for side in ("plain", "sealed")
                                    for mode in ("vector", "lexical", "hybrid"))
    assert all(s["count"] == 5 for s in series.values())
    assert set(latency["recall"]["ratios"]) >= {"hybrid_p95", "lexical_p50", "vector_p95"}

    locomo = report["locomo"]
    assert locomo["turns_per_side"] == len(TURNS) and locomo["questions"] == len(QUESTIONS)
    # Blind tokens still find the one turn holding the question's rare word, as words do.
    assert locomo["overall"]["plain"]["R@5"] == locomo["overall"]["sealed"]["R@5"] == 1.0
    assert locomo["delta"]["MRR"] == 0.0
    assert {"locomo_abs_delta_R@5", "locomo_abs_delta_MRR", "ingest_wall_sealed_over_plain",
            "recall_hybrid_p95_sealed_over_plain"} <= set(report["targets"])
    assert "LoCoMo hybrid" in done.stdout and "ingest memories/s" in done.stdout
