"""bench/small_index.py keeps running: a tiny run end to end. Its numbers mean nothing at
this size; what is checked is that every series was measured at every size, that the
small index and Chroma agree on the top results of so few vectors, and that the JSON and
the chart were written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.processes


def test_a_tiny_run_measures_both_sides_at_each_size(tmp_path):
    output = tmp_path / "small.json"
    subprocess.run([sys.executable, "bench/small_index.py", "--sizes", "20,60",
                    "--queries", "5", "--output", str(output)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads(output.read_text())
    assert [entry["size"] for entry in report["sizes"]] == [20, 60]
    for entry in report["sizes"]:
        assert all(entry[series]["count"] == 5
                   for series in ("small_cold", "small_warm", "small_filtered"))
        assert entry["chroma_cold"]["count"] == entry["chroma_warm"]["count"] == 40
        assert entry["top50_overlap_with_chroma"] == 1.0  # so few vectors: HNSW is exact too
    assert report["limit_default"] == 2000
    assert output.with_suffix(".png").stat().st_size > 0
