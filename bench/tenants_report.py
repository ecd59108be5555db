"""bench/tenants.py's report: ratios against the one-namespace server and growth per
1,000 namespaces, the chart and the printed summary, all read from the report the run
writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def per_thousand(samples: list[dict[str, Any]], x: str, y: Callable[[dict[str, Any]], float]) -> float | None:
    """Growth of ``y`` per 1,000 of ``x`` (least squares over the samples)."""
    points = [(s[x], y(s)) for s in samples if x in s]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    xs, ys = zip(*points, strict=True)
    return float(np.polyfit(xs, ys, 1)[0] * 1000)


def _p95_ratio(recall: dict[str, Any], name: str) -> float | None:
    if name not in recall or "one_namespace_server" not in recall:
        return None
    return recall[name]["p95"] / recall["one_namespace_server"]["p95"]


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the one-namespace server and growth per 1,000 namespaces."""
    out: dict[str, Any] = {}
    many, large = report.get("many") or {}, report.get("large") or {}
    if many:
        populated = many.get("populate", {}).get("samples", [])
        touched = many.get("touch_all", {}).get("samples", [])
        grow = {"rss_mb": lambda s: s["rss_mb"], "open_files": lambda s: s["open_files"],
                "schema_rows": lambda s: s["sqlite_master_rows"], "disk_mb": lambda s: s["disk_mb"]["total"]}
        out["many"] = {
            **{f"{name}_p95_over_one_namespace": _p95_ratio(many.get("recall", {}), name)
               for name in ("random_small_namespace", "same_small_namespace")},
            **{f"populate_{y}_per_1000_namespaces": per_thousand(populated, "namespaces", f)
               for y, f in grow.items()},
            **{f"recall_all_{y}_per_1000_namespaces": per_thousand(touched, "namespaces_recalled", grow[y])
               for y in ("rss_mb", "open_files")}}
    if large:
        out["large"] = {f"{name}_p95_over_one_namespace": _p95_ratio(large.get("recall", {}), name)
                        for name in ("small_namespace", "large_namespaces_rotating", "same_large_namespace")}
    return out


def chart(report: dict[str, Any], path: Path) -> None:
    """RSS and open files against namespaces created (and recalled after a restart); recall
    p95 of every series next to the one-namespace server's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss_ax, fd_ax, sql_ax, bars) = plt.subplots(1, 4, figsize=(21, 4.8))
    many = report.get("many") or {}
    for key, x, label, style in (("populate", "namespaces", "populating", "-o"),
                                 ("touch_all", "namespaces_recalled",
                                  "after the restart and recall phase: a recall in each", "--s")):
        samples = many.get(key, {}).get("samples", [])
        if samples:
            xs = [s[x] for s in samples]
            rss_ax.plot(xs, [s["rss_mb"] for s in samples], style, label=label, markersize=3)
            fd_ax.plot(xs, [s["open_files"] for s in samples], style, label=label, markersize=3)
    populated = many.get("populate", {})
    if populated.get("samples"):
        sql_ax.plot([s["namespaces"] for s in populated["samples"]],
                    [s["new_connection_first_query_ms"] for s in populated["samples"]], "-o",
                    markersize=3, label="new SQLite connection: first query")
        windows = populated.get("timing_per_window", [])
        sql_ax.plot([w["namespaces"] for w in windows],
                    [w["create_namespace_and_key"]["p50"] for w in windows], "--s", markersize=3,
                    label="create namespace + key, p50")
    sql_ax.set_title("What the SQL schema costs (7 entries per FTS5 table)", fontsize=10)
    sql_ax.set_ylabel("ms")
    if "restart" in many:
        for ax, y in ((rss_ax, "rss_mb"), (fd_ax, "open_files")):
            ax.axhline(many["restart"]["after_start"][y], color="grey", lw=0.8, ls=":",
                       label="right after the restart")
    for ax, label in ((rss_ax, "server RSS (MB)"), (fd_ax, "server open files"), (sql_ax, "ms")):
        ax.set_xlabel("namespaces")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    p = report["parameters"]
    rss_ax.set_title(f"RSS, {p['per_namespace']} memories per namespace", fontsize=10)
    limit = many.get("populate", {}).get("samples", [{}])[0].get("nofile") or 0
    fd_ax.set_title(f"Open files (RLIMIT_NOFILE {limit}: Chroma keeps <= {limit // 5} indexes open)",
                    fontsize=10)
    labels, p95s, colors = [], [], []
    for section, color in (("many", "#d95f02"), ("large", "#7570b3")):
        for name, stats in (report.get(section) or {}).get("recall", {}).items():
            if name != "after":
                labels.append(f"{section}: {name.replace('_', ' ')}")
                p95s.append(stats["p95"])
                colors.append("#1b9e77" if name == "one_namespace_server" else color)
    if labels:
        bars.bar_label(bars.bar(range(len(labels)), p95s, color=colors), fmt="%.1f", fontsize=8)
        bars.set_xticks(range(len(labels)), labels, fontsize=7, rotation=35, ha="right")
    bars.set_ylabel("recall p95 (ms), k=10, default mode")
    bars.set_title("Recall p95 (green: the server holding one namespace)", fontsize=10)
    fig.suptitle(f"MemoryWeb, many namespaces: {p['namespaces']:,} x {p['per_namespace']}, "
                 f"{p['large_namespaces']} x {p['large_size']:,}; embedder {p['embedder']}; "
                 f"{report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)



def _line(label: str, s: dict[str, Any]) -> str:
    return (f"{label}: RSS {s['rss_mb']:.0f} MB, {s['open_files']} open files {s['fd_kinds']}, "
            f"{s['sqlite_master_rows']} schema rows (new connection {s['new_connection_first_query_ms']:.0f} "
            f"ms), {s['chroma_collections']} collections / {s['chroma_segment_dirs']} segment dirs, "
            f"disk {s['disk_mb']['total']:.0f} MB")


def print_summary(report: dict[str, Any]) -> None:
    """The last sample of each phase, the timings, ratios and targets (the rest: the JSON)."""
    for section in ("many", "large"):
        out = report.get(section) or {}
        for phase, s in (("populated", (out.get("populate", {}).get("samples") or [None])[-1]),
                         (f"restarted (ready in {out.get('restart', {}).get('startup_s', 0):.1f} s)",
                          out.get("restart", {}).get("after_start")),
                         ("after the sweep", (out.get("touch_all", {}).get("samples") or [None])[-1]),
                         ("after create/delete", out.get("create_delete", {}).get("after"))):
            if s:
                print(_line(f"{section} {phase}", s))
        timings = {**{f"recall {k}": v for k, v in out.get("recall", {}).items() if k != "after"},
                   **out.get("create_delete", {}).get("timing", {})}
        for op, stats in timings.items():
            if not stats.get("count"):  # nothing timed (--churn 0), or every call failed
                print(f"  {section} {op:34} no samples")
                continue
            print(f"  {section} {op:34} p50 {stats['p50']:7.1f}  p95 {stats['p95']:7.1f} ms")
        problems = [out.get("error"), *(out.get(part, {}).get(what, {}).get("error")
                    for part in ("populate", "touch_all") for what in ("failure", "first_refused"))]
        for problem in filter(None, problems):
            print(f"  {section} FAILED: {problem[:500]}")
    print(json.dumps(report["ratios"], indent=2))
    for name, verdict in report["targets"].items():
        print(f"target {name}: {verdict.upper()}")
