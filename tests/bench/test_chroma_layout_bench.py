"""bench/chroma_layout.py keeps running: a tiny run end to end. Its numbers mean nothing
at this size; what is checked is that every layout was measured, that the filtered query
of the shared collection returned one namespace's true top (the bench's own check), and
that the JSON and the chart were written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.processes


def test_a_tiny_run_measures_every_layout(tmp_path):
    output = tmp_path / "layout.json"
    subprocess.run([sys.executable, "bench/chroma_layout.py", "--sizes", "2,3",
                    "--per-namespace", "60", "--queries", "5", "--output", str(output)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads(output.read_text())
    assert [entry["namespaces"] for entry in report["shared"]] == [2, 3]
    assert all(entry["filtered_exact"] for entry in report["shared"])
    assert all(entry[series]["count"] == 5 for entry in report["shared"]
               for series in ("filtered", "unfiltered"))
    assert report["own_cold"]["count"] == report["own_warm"]["count"] == 40  # collections
    assert report["sql_brute_force"]["count"] == 5
    assert report["sql_brute_force"]["namespaces_in_table"] == 3
    assert output.with_suffix(".png").stat().st_size > 0
