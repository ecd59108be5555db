"""bench/consolidation.py's judging and report: the tuning rule, the targets, the chart
and the printed summary, all read from the report the run writes (so they can be drawn
again from a saved JSON, and the self-test checks them without a server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = {"precision": 0.95, "recall": 0.80, "seconds_at_100k": 600.0}


def choose(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The tuning rule: of the runs with precision >= 0.95 and no hard negative merged, the
    highest recall (then precision, then threshold); if none qualifies, the best F1."""
    def key(r: dict[str, Any]) -> tuple:
        m = r["metrics"]
        return (m["recall"] or 0, m["precision"] or 0, r["threshold_used"] or 0)

    ok = [r for r in runs if (r["metrics"]["precision"] or 0) >= TARGETS["precision"]
          and r["metrics"]["hard_negatives_merged"] == 0]
    best = max(ok, key=key) if ok else max(runs, key=lambda r: r["metrics"]["f1"] or 0)
    return {"rule": choose.__doc__.split("\n")[0].strip() + " " + choose.__doc__.split("\n")[1].strip(),
            "threshold": best["threshold_used"], "requested": best["threshold_requested"],
            "meets_precision_and_hard_negatives": bool(ok), "precision": best["metrics"]["precision"],
            "recall": best["metrics"]["recall"]}


def targets(runs: list[dict[str, Any]], n: int,
            applied: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """At the default threshold (the first run); with --apply, the applied call's time too."""
    if not runs:
        return {}
    m, wall = runs[0]["metrics"], runs[0]["wall_s"]
    checks = {"precision_ge_0.95": (m["precision"], ">=", TARGETS["precision"]),
              "recall_ge_0.80": (m["recall"], ">=", TARGETS["recall"]),
              "no_hard_negative_merged": (m["hard_negatives_merged"], "<=", 0)}
    if n >= 100_000:
        checks["consolidate_100k_le_600s"] = (wall, "<=", TARGETS["seconds_at_100k"])
        if applied is not None:
            checks["applied_seconds_le_600"] = (applied["wall_s"], "<=", TARGETS["seconds_at_100k"])
    def passes(value: float | None, op: str, limit: float) -> bool:
        return value is not None and (value <= limit if op == "<=" else value >= limit)

    return {name: {"value": value, "limit": f"{op} {limit}",
                   "result": "pass" if passes(value, op, limit) else "fail"}
            for name, (value, op, limit) in checks.items()}


def chart(report: dict[str, Any], path: Path) -> None:
    """Precision and recall against the threshold, hard negatives merged / as conflicts,
    and the time of ingest and of each consolidate call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, (pr, hn, tm) = plt.subplots(1, 3, figsize=(17, 5))
    xs = [r["threshold_used"] if r["threshold_used"] is not None else float("nan") for r in runs]
    order = sorted(range(len(runs)), key=lambda i: (xs[i] != xs[i], xs[i]))  # NaN (unknown) last
    swept = [i for i in order if xs[i] == xs[i]]
    for key, color in (("precision", "#1b9e77"), ("recall", "#d95f02"), ("groups_exact_rate", "#7570b3")):
        pr.plot([xs[i] for i in swept], [runs[i]["metrics"][key] for i in swept], "o-", color=color,
                label=key.replace("_", " "))
        if runs and runs[0]["threshold_requested"] is None and xs[0] == xs[0]:
            pr.plot([xs[0]], [runs[0]["metrics"][key]], "*", color=color, markersize=16)
    if runs and xs[0] != xs[0]:  # the server did not say its default threshold: a level line
        for key, color in (("precision", "#1b9e77"), ("recall", "#d95f02")):
            pr.axhline(runs[0]["metrics"][key] or 0, color=color, ls=":", lw=2, label=f"default: {key}")
    pr.axhline(TARGETS["precision"], color="#1b9e77", ls="--", lw=1)
    pr.axhline(TARGETS["recall"], color="#d95f02", ls="--", lw=1)
    pr.set(title="Proposals vs ground truth (star: default threshold)", xlabel="threshold", ylim=(0, 1.02))
    pr.legend(fontsize=8)
    hn.plot([xs[i] for i in swept], [runs[i]["metrics"]["hard_negatives_merged"] for i in swept], "o-",
            color="red", label="hard negatives merged (target 0)")
    hn.plot([xs[i] for i in swept], [runs[i]["metrics"]["hard_negatives_as_conflicts"] for i in swept], "s-",
            color="#386cb0", label="hard negatives reported as conflicts")
    hn.set(title=f"Hard negatives (of {report['corpus']['hard_negative_pairs']})", xlabel="threshold")
    hn.legend(fontsize=8)
    applied = [report["applied"]] if report.get("applied") else []
    names = (["ingest"] + [f"dry run\n{r['threshold_requested'] or 'default'}" for r in runs]
             + ["applied\ndefault"] * len(applied))
    timed = [report["ingest"], *runs, *applied]
    xs_t = list(range(len(timed)))
    bars = tm.bar([x - 0.2 for x in xs_t], [r["wall_s"] for r in timed], width=0.4,
                  color=["#999999"] + ["#e7298a"] * len(runs) + ["#66a61e"] * len(applied), label="wall")
    tm.bar_label(bars, fmt="%.0f s", fontsize=8)
    cpu = tm.bar([x + 0.2 for x in xs_t], [r.get("server_cpu_s") or 0 for r in timed], width=0.4,
                 color="white", edgecolor="black", hatch="//", label="server CPU")
    tm.bar_label(cpu, fmt="%.0f s", fontsize=7)
    tm.set_xticks(xs_t, names)
    if report["parameters"]["n"] >= 100_000:
        tm.axhline(TARGETS["seconds_at_100k"], color="red", ls="--", lw=1, label="600 s target")
    tm.legend(fontsize=8)
    tm.set(title="Wall time and the server's CPU (hatched)", ylabel="seconds")
    tm.tick_params(axis="x", labelsize=7)
    p = report["parameters"]
    fig.suptitle(f"MemoryWeb consolidation: {p['n']:,} memories, {report['corpus']['groups']} groups, "
                 f"{report['corpus']['hard_negative_pairs']} hard negatives; part {p['part']} "
                 f"(seed {p['seed']}), "
                 f"{p['embedder']}; {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(report: dict[str, Any]) -> None:
    ing = report["ingest"]
    if ing.get("by_tenth"):
        print("ingest rate per tenth of the corpus (memories/s): "
              + ", ".join(f"{t['per_s']:.0f}" for t in ing["by_tenth"]))
    if ing.get("reused_data_dir"):
        print(f"\ningest: none, {ing['memories']:,} memories of {ing['reused_data_dir']} (--reuse-data)")
    else:
        print(f"\ningest: {ing['memories']:,} memories in {ing['wall_s']:.1f} s ({ing['per_s']:.0f}/s); "
              f"near-duplicate links at ingest {ing['near_duplicate_links_at_ingest']}")
    print(f"{'threshold':>13} {'P':>6} {'R':>6} {'exact':>6} {'HN merged':>9} {'HN confl':>8} "
          f"{'proposals':>9} {'wall s':>8} {'cpu s':>7}")
    for r in report["runs"]:
        m = r["metrics"]
        label = "default" if r["threshold_requested"] is None else f"{r['threshold_requested']:g}"
        if r["threshold_used"] is not None:
            label += f" ({r['threshold_used']:g})" if r["threshold_requested"] is None else ""
        print(f"{label:>13} {m['precision'] or 0:6.3f} {m['recall'] or 0:6.3f} "
              f"{m['groups_exact_rate'] or 0:6.3f} "
              f"{m['hard_negatives_merged']:9d} {m['hard_negatives_as_conflicts']:8d} {m['proposals']:9d} "
              f"{r['wall_s']:8.1f} {r['server_cpu_s']:7.1f}")
    if report["runs"]:
        m = report["runs"][0]["metrics"]
        by = {k: v["recall"] for k, v in m["recall_by_difficulty"].items()}
        print(f"default: recall by difficulty {by}; "
              f"false pairs {m['false_pairs_by_kind']}")
    if report.get("applied"):
        a = report["applied"]
        print(f"applied (default threshold): {a['wall_s']:.1f} s wall, {a['server_cpu_s']:.1f} s server CPU, "
              f"{a['applied_proposals']} proposals; {a['counts']}; load {a['loadavg_before']} -> "
              f"{a['loadavg_after']}")
    if "selection" in report:
        print(f"tuning selection: {report['selection']}")
    for name, t in report["targets"].items():
        print(f"target {name}: {t['value']} {t['limit']} -> {t['result'].upper()}")
