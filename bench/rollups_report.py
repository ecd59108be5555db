"""bench/rollups.py's judging and report: the targets, the chart and the printed
summary, all read from the report the run writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LEVELS = ("segment", "day", "week", "month", "year")


def targets(results: dict[str, Any]) -> dict[str, Any]:
    day = results["day"]["build"]["wall_s"]
    inc = results["month"]["incremental"]["rebuilt"]
    none = results["month"]["no_change"]["rebuilt"]
    elsewhere = sum(v["elsewhere"] for v in inc["by_level"].values())
    ours = sum(v["that_day_or_ancestor"] for v in inc["by_level"].values())
    return {
        "day_build_under_60s": {"value": day, "limit": "< 60 s", "result": "pass" if day < 60 else "fail"},
        "one_changed_day_rebuilt_alone": {
            "value": {"written_elsewhere": elsewhere, "written_that_day_or_ancestors": ours},
            "limit": "0 nodes of other days (or of their weeks, months, years) rewritten; the "
                     "changed day's day node rewritten",
            "result": "pass" if inc["only_that_day_and_ancestors"] else "fail"},
        "ancestors_follow_a_changed_day_summary": {
            "value": inc["that_day_and_ancestors"],
            "limit": "when the day's summary text changed, its week, month and year are rewritten",
            "result": "pass" if not inc["that_day_and_ancestors"]["day"]["summary_changed"] or all(
                inc["that_day_and_ancestors"][lv]["rewritten"] for lv in ("week", "month", "year"))
            else "fail"},
        "no_change_builds_nothing": {"value": none["written"] + none["removed"], "limit": "0 nodes written",
                                     "result": "pass" if none["written"] + none["removed"] == 0 else "fail"},
    }


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    day, month = report["day"], report["month"]
    builds = {"day full": day["build"], "day no change": day["no_change"], "month full": month["build"],
              "month 1 day changed": month["incremental"], "month no change": month["no_change"]}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    names = list(builds)
    floors = [b.get("floor", {}).get("wall_s", 0.0) for b in builds.values()]
    bars = axes[0].bar(names, [b["wall_s"] for b in builds.values()], color="#d95f02", label="build")
    axes[0].bar_label(bars, fmt="%.1f s", fontsize=8)
    axes[0].bar(names, floors, color="#999999", width=0.4, label="floor: summarizer alone")
    axes[0].axhline(60, color="red", linestyle="--", linewidth=1, label="60 s target (day)")
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("seconds")
    axes[0].set_title("build wall time")
    axes[0].tick_params(axis="x", labelrotation=20, labelsize=8)
    axes[0].legend(fontsize=8)
    for k, (name, b) in enumerate((("day full", day["build"]), ("month full", month["build"]))):
        write = [b["per_level"][lv]["write_s"] - b["per_level"][lv]["summarize_s"] for lv in LEVELS]
        summ = [b["per_level"][lv]["summarize_s"] for lv in LEVELS]
        xs = [x + k * 0.4 for x in range(len(LEVELS))]
        axes[1].bar(xs, summ, 0.4, color=("#1b9e77", "#7570b3")[k], label=f"{name}: summarize")
        axes[1].bar(xs, write, 0.4, bottom=summ, color=("#1b9e77", "#7570b3")[k], alpha=0.45,
                    label=f"{name}: write path")
    axes[1].set_xticks([x + 0.2 for x in range(len(LEVELS))], LEVELS)
    axes[1].set_ylabel("seconds")
    axes[1].set_title("node writes per level (summarize + write path)")
    axes[1].legend(fontsize=7)
    inc = month["incremental"]["rebuilt"]["by_level"]
    axes[2].bar(LEVELS, [inc[lv]["that_day_or_ancestor"] for lv in LEVELS], color="#1b9e77",
                label="the changed day / its ancestors")
    axes[2].bar(LEVELS, [inc[lv]["elsewhere"] for lv in LEVELS], color="red", label="anything else")
    axes[2].set_title(f"incremental: nodes rewritten ({month['incremental']['rebuilt']['unchanged']} "
                      f"of {month['incremental']['rebuilt']['nodes_after']} untouched)")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"MemoryWeb rollups: day {report['parameters']['day_events']:,} events, month "
                 f"{month['load']['events']:,}; {report['timestamp'][:10]} "
                 f"(loadavg {report['machine']['loadavg_before'][0]:.1f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_summary(report: dict[str, Any]) -> None:
    day, month = report["day"], report["month"]
    for name, b in (("day full", day["build"]), ("day no change", day["no_change"]),
                    ("month full", month["build"]), ("month 1 day changed", month["incremental"]),
                    ("month no change", month["no_change"])):
        fl = b.get("floor")
        print(f"{name:22}{b['wall_s']:8.2f} s  nodes {b['nodes_built']:5}  "
              + (f"floor {fl['wall_s']:.2f} s ({b['wall_s'] / max(fl['wall_s'], 1e-9):.1f}x)  " if fl else "")
              + f"built {b['report']['built']}  RSS {b['rss']['rss_mb']:.0f} MiB")
    print(f"load: day {day['load']['events_per_s']:.0f} events/s, "
          f"month {month['load']['events_per_s']:.0f} events/s")
    inc = month["incremental"]["rebuilt"]
    print(f"incremental: {inc['written']} written ({inc['created']} new), {inc['removed']} removed, "
          f"{inc['unchanged']} unchanged; by level {inc['by_level']}")
    for name, t in report["targets"].items():
        print(f"target {name}: {t['value']} {t['limit']} -> {t['result'].upper()}")
