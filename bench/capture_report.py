"""bench/capture.py's report: one embedder's section of the JSON summarised from its
turns (rates, ratios to the floor, hook wall times), the chart and the printed summary;
the chart is drawn from the JSON alone (``--replot``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SERIES = ("hook", "jsonl_100", "jsonl_1000", "direct_events", "direct_memories")


def stats_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ms = np.asarray(samples) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "mean": float(ms.mean()),
            "count": len(samples)}


def summarise(rows: list[dict[str, Any]], tails: dict[str, Any], stored: dict[str, Any],
              ctx: dict[str, Any], expected: int) -> dict[str, Any]:
    series: dict[str, Any] = {}
    for name in SERIES:
        mine = [r for r in rows if r["series"] == name]
        wall = sum(r["wall_s"] for r in mine) + tails.get(name, {}).get("flush_wall_s", 0.0)
        events = sum(r["events"] for r in mine)
        series[name] = {"events": events, "wall_s": wall, "events_per_s": events / wall,
                        "server_cpu_ms_per_event": 1000 * sum(r["server_cpu_s"] for r in mine) / events,
                        "client_cpu_ms_per_event": 1000 * sum(r["client_cpu_s"] for r in mine) / events,
                        "stored": stored[name], **({"final_flush": tails[name]} if name in tails else {})}
    floor = series["direct_events"]["events_per_s"]
    for name in SERIES:
        series[name]["over_direct_events"] = series[name]["events_per_s"] / floor
    walls = ctx["hook_walls"]
    by_hook = {h: stats_ms([w["wall_s"] for w in walls if w["hook"] == h])
               for h in dict.fromkeys(w["hook"] for w in walls)}
    hook = stats_ms([w["wall_s"] for w in walls])
    start = stats_ms(ctx["floors"].samples["python_start"])
    imports = stats_ms(ctx["floors"].samples["python_start_import"])
    series["hook"]["invocations"] = len(walls)
    series["hook"]["events_per_invocation"] = series["hook"]["events"] / len(walls)
    for name in ("jsonl_100", "jsonl_1000"):
        series[name]["invocations"] = len(ctx["jsonl_walls"][name])
        series[name]["invocation_ms"] = stats_ms(ctx["jsonl_walls"][name])
        series[name]["left_in_spool_after_invocation"] = {
            "max": max(ctx["jsonl_pending"][name]), "mean": float(np.mean(ctx["jsonl_pending"][name]))}
    complete = all(series[n]["stored"]["rows"] == expected for n in SERIES if n != "direct_memories")
    return {"events_expected": expected, "all_events_stored_once": complete and all(
                series[n]["stored"]["event_ids"] == series[n]["stored"]["distinct_event_ids"] == expected
                for n in SERIES if n != "direct_memories"),
            "series": series, "blocks": rows,
            "hook_wall_ms": {"all": hook, "by_hook": by_hook, "python_start": start,
                             "python_start_import": imports,
                             "p50_over_python_start": hook["p50"] / start["p50"],
                             "p95_over_python_start": hook["p95"] / start["p95"],
                             "p50_minus_start_import_ms": hook["p50"] - imports["p50"]}}


# --- report ----------------------------------------------------------------------------------

def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["embedders"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    width = 0.8 / max(1, len(runs))
    for j, (name, run) in enumerate(runs.items()):
        values = [*(run["series"][s]["events_per_s"] for s in SERIES),
                  run["outage"]["replay_events_per_s"] or 0]
        bars = axes[0].bar([x + j * width for x in range(len(values))], values, width, label=name)
        axes[0].bar_label(bars, fmt="%.0f", fontsize=7)
        hw = run["hook_wall_ms"]
        labels = ["python -c pass", "+ import client", "hook, server down", "hook"]
        stats = [hw["python_start"], hw["python_start_import"], run["outage"]["spool_only_hook_ms"],
                 hw["all"]]
        for k, p in enumerate(("p50", "p95")):
            axes[1].bar([x + j * width + k * width / 2 for x in range(4)], [s[p] for s in stats], width / 2,
                        label=f"{name} {p}", alpha=0.6 + 0.4 * k)
        by = hw["by_hook"]
        axes[2].bar([x + j * width for x in range(len(by))], [v["p95"] for v in by.values()], width,
                    label=f"{name} p95")
        axes[2].set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(by))], list(by), fontsize=8)
        axes[1].set_xticks([x + width * (len(runs) - 1) / 2 for x in range(4)], labels, fontsize=8)
    axes[0].set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(SERIES) + 1)],
                       [*SERIES, "replay"], rotation=20, fontsize=8)
    axes[0].set_yscale("log")  # MiniLM's rates are ~30x below the hash embedder's
    axes[0].set_ylabel("events/s (log)")
    axes[0].set_title("capture throughput (floor: direct_events)")
    axes[1].set_ylabel("ms per invocation")
    axes[1].set_title("hook wall time vs the interpreter's start")
    axes[2].set_ylabel("ms")
    axes[2].set_title("hook wall p95 by hook")
    for ax in axes:
        ax.legend(fontsize=7)
    sizes = ", ".join(f"{name} {run['events_expected']:,}" for name, run in runs.items())
    fig.suptitle(f"MemoryWeb capture, events per series: {sizes}; "
                 f"{report['timestamp'][:10]} (loadavg {report['machine']['loadavg_before'][0]:.1f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_summary(report: dict[str, Any]) -> None:
    for name, run in report["embedders"].items():
        print(f"\n== embedder {name}: {run['events_expected']:,} events per series, "
              f"stored once each: {run['all_events_stored_once']}")
        print(f"{'series':16}{'events/s':>10}{'/floor':>8}{'srv ms/ev':>11}{'cli ms/ev':>11}")
        for s in SERIES:
            row = run["series"][s]
            print(f"{s:16}{row['events_per_s']:10.1f}{row['over_direct_events']:8.2f}"
                  f"{row['server_cpu_ms_per_event']:11.2f}{row['client_cpu_ms_per_event']:11.2f}")
        hw = run["hook_wall_ms"]
        print(f"hook wall p50 {hw['all']['p50']:.1f} ms, p95 {hw['all']['p95']:.1f} ms; python -c pass p50 "
              f"{hw['python_start']['p50']:.1f} / p95 {hw['python_start']['p95']:.1f}; + import p50 "
              f"{hw['python_start_import']['p50']:.1f}; server down p50 "
              f"{run['outage']['spool_only_hook_ms']['p50']:.1f} ms")
        out = run["outage"]
        print(f"outage: {out['events_spooled']} spooled, replayed {out['events_replayed']} in "
              f"{out['replay_wall_s']:.2f} s = {out['replay_events_per_s']:.0f} events/s "
              f"({out['replay_over_direct_events']:.2f}x direct); lost {out['lost']}, duplicates "
              f"{out['duplicates']}, ok {out['ok']}")
