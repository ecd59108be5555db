"""bench/tenants_report.py's summary of a run that skipped a phase: ``--churn 0`` times no
create/delete, and the summary printed the recall lines, then crashed on the empty
timings (found running ``bench/tenants.py --churn 0``, 2026-12-07)."""

from __future__ import annotations

import sys

from tests.servers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import tenants_report


def test_a_run_without_create_delete_is_summarised(capsys):
    recall = {"p50": 7.8, "p95": 10.8, "count": 200}
    tenants_report.print_summary({
        "many": {"recall": {"one_namespace_server": recall, "random_small_namespace":
                            {**recall, "p95": 21.0}, "after": {}},
                 "create_delete": {"timing": {"create_namespace_and_key": {"count": 0},
                                              "delete_new": {"count": 0}}}},
        "ratios": {"small_random_over_one_namespace_p95": 1.94},
        "targets": {"small_within_20pct": "fail"}})
    printed = capsys.readouterr().out
    assert "many recall random_small_namespace" in printed and "p95    21.0 ms" in printed
    assert "many create_namespace_and_key" in printed and "no samples" in printed
    assert "target small_within_20pct: FAIL" in printed
