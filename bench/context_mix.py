#!/usr/bin/env python
"""Conversation context as a vector mix: LoCoMo recall and embedding CPU, against the text context.

The mix is now the app's own (apps/memories/context.py ``index_vectors``), chosen by
``MEMORYWEB_CONTEXT_EMBEDDING``: with ``mix`` (the default) a memory whose session has a turn
before it is indexed with

    v = normalize(e(content) + alpha * e(previous turn's content)),  alpha = MEMORYWEB_CONTEXT_MIX_WEIGHT

where e() is the plain, normalised embedding of a text alone (kept in SQL,
apps/memories/plain_vectors.py, so the next turn's mix reads it instead of embedding it
again; the mix is never recursive: an erased turn leaves nothing two turns later); with
``text`` it embeds ``content + "\\n\\n" + previous turn[:1000]`` (``index_texts``):
the model reads about twice the tokens per memory. This script measures the app's code
path under each setting; it patches nothing in the app.

Settings, each run under ``django.test.override_settings``:

* ``text``: ``MEMORYWEB_INDEX_CONTEXT=True, MEMORYWEB_CONTEXT_EMBEDDING="text"``;
* ``off``: ``MEMORYWEB_INDEX_CONTEXT=False`` (no context in either index);
* ``mix:ALPHA``: ``MEMORYWEB_INDEX_CONTEXT=True, MEMORYWEB_CONTEXT_EMBEDDING="mix",
  MEMORYWEB_CONTEXT_MIX_WEIGHT=ALPHA`` (0 <= ALPHA <= 1, the setting's bound).

The keyword index's context column and its weight, fusion, priors and the query embedding
are as in production in every setting. Each setting is ingested into fresh namespaces and
scored with bench/locomo.py's own ``ingest`` and ``evaluate`` (evidence recall@k, MRR), then
its namespaces are deleted (their kept plain vectors with them). There is no cross-setting
cache: an alpha sweep embeds the part's turns once per setting (about a minute of CPU each
on the tuning part here). For the run of a setting the configured model
(``get_embedder().inner``) is wrapped in a counter that only counts what passes through it
(texts and calls, during ingest and during recall: ``embedded``; the vectors are the
model's). The protocol is bench/locomo.py's: choose alpha on the ``tuning`` part (hybrid R@5,
then MRR), report the chosen alpha and the baseline once on the ``reporting`` part
(``--swap`` exchanges parts).

``--cpu`` also times the embedder (``get_embedder().inner.embed``, MEMORYWEB_EMBED_BATCH)
on all LoCoMo turns: (a) plain texts, (b) today's text+context, (c) what a mix ingest in
``--cpu-batch`` batches embeds (plain texts + each batch's extra predecessor; compared with
(a) embedded in the same batches), as ``time.process_time()`` seconds per 1,000 memories,
median of ``--reps`` interleaved repetitions. The extra-embedding counts for batch sizes
``--count-batches`` are computed from the data (LoCoMo's turns and bench/corpus.py's
synthetic corpus) without a server: a memory whose predecessor an earlier batch stored
needs that predecessor's plain vector, which the app reads from its kept row (an extra
embedding only when the row is missing or stale), so they are an upper bound.

Results are merged into ``--output`` (by part and setting; default
bench/results/context_mix.json), and the chart (same name, .png) is redrawn: hybrid R@5 and
MRR against alpha on the tuning part, the text and off baselines as lines, the reporting
part's runs as markers. A row's ``settings`` holds its overrides (rows of the earlier,
bench-patched mix have no ``MEMORYWEB_CONTEXT_EMBEDDING`` there).

Examples:
  .venv/bin/python bench/context_mix.py --part tuning --baselines text,off   # the sweep
  .venv/bin/python bench/context_mix.py --part reporting --baselines text --alphas 0.4
  .venv/bin/python bench/context_mix.py --baselines "" --alphas "" --cpu     # CPU only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from bench import locomo
    from bench.corpus import generate_memories
except ImportError:  # run as a script, bench/ is sys.path[0]
    import locomo
    from corpus import generate_memories

RESULTS = locomo.RESULTS
DEFAULT_ALPHAS = "0.25,0.4,0.55,0.7,1.0"
DEFAULT_MODES = "vector,lexical,hybrid"


# --- one setting through the app ---------------------------------------------------------

class CountingEmbedder:
    """The configured model, counting the texts and calls that pass through it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.texts = self.calls = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Any:
        with self._lock:
            self.texts += len(texts)
            self.calls += 1
        return self.inner.embed(texts)

    def __getattr__(self, name: str) -> Any:  # name, dimension, batch_size, tokenizer ...
        return getattr(self.inner, name)

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.texts, self.calls


@contextmanager
def counting_embedder() -> Iterator[CountingEmbedder]:
    """``get_embedder().inner`` wrapped in a :class:`CountingEmbedder` for the block."""
    from apps.memories.embeddings import get_embedder

    measured = get_embedder()
    counter = CountingEmbedder(measured.inner)
    measured.inner = counter
    try:
        yield counter
    finally:
        measured.inner = counter.inner


def parse_setting(name: str) -> tuple[str, float | None]:
    if name in ("text", "off"):
        return name, None
    if name.startswith("mix:"):
        return "mix", float(name[4:])
    raise ValueError(f"unknown setting {name!r} (text, off or mix:ALPHA)")


def setting_overrides(name: str) -> dict[str, Any]:
    """The Django settings a setting runs under."""
    kind, alpha = parse_setting(name)
    if kind == "off":
        return {"MEMORYWEB_INDEX_CONTEXT": False}
    if kind == "text":
        return {"MEMORYWEB_INDEX_CONTEXT": True, "MEMORYWEB_CONTEXT_EMBEDDING": "text"}
    return {"MEMORYWEB_INDEX_CONTEXT": True, "MEMORYWEB_CONTEXT_EMBEDDING": "mix",
            "MEMORYWEB_CONTEXT_MIX_WEIGHT": alpha}


def run_setting(name: str, samples: list[dict[str, Any]], principal,
                modes: tuple[str, ...]) -> dict[str, Any]:
    """Ingest the part into fresh namespaces under one setting, score it, delete them."""
    from django.test import override_settings

    from apps.tenancy import namespaces

    _, alpha = parse_setting(name)
    overrides = setting_overrides(name)
    started = time.perf_counter()
    try:
        with override_settings(**overrides), counting_embedder() as counter:
            cpu = time.process_time()
            known = locomo.ingest(samples, principal)
            ingest_cpu = time.process_time() - cpu
            ingest_texts, ingest_calls = counter.snapshot()
            result = locomo.evaluate(samples, known, principal, modes)
            total_texts, total_calls = counter.snapshot()
    finally:
        for sample in samples:
            try:
                namespaces.delete(principal, sample["sample_id"].lower())
            except Exception as exc:  # never created (a failed ingest)
                print(f"  (namespace {sample['sample_id']}: {exc})", file=sys.stderr)
    result.update({"setting": name, "alpha": alpha, "settings": overrides,
                   "ingest_cpu_seconds": ingest_cpu, "wall_seconds": time.perf_counter() - started,
                   "embedded": {"turns": sum(len(k) for k in known.values()),
                                "ingest_texts": ingest_texts, "ingest_calls": ingest_calls,
                                "recall_texts": total_texts - ingest_texts,
                                "recall_calls": total_calls - ingest_calls}})
    return result


# --- extra embeddings, counted from the data ----------------------------------------------

def extra_embeddings(streams: dict[str, list[str]], batch: int) -> dict[str, Any]:
    """Each namespace's items (their session ids, '' for none) ingested in order in
    batches of ``batch``: how many have a predecessor in their session that an earlier
    batch stored (the one extra embedding the mix needs), of how many with a predecessor."""
    extra = with_context = total = 0
    for items in streams.values():
        seen: set[str] = set()
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            in_batch: set[str] = set()
            for session in chunk:
                total += 1
                if not session:
                    continue
                if session in in_batch:
                    with_context += 1
                elif session in seen:
                    with_context += 1
                    extra += 1
                in_batch.add(session)
            seen |= in_batch
    return {"batch": batch, "memories": total, "with_context": with_context,
            "extra_embeddings": extra, "extra_per_memory": extra / total if total else 0.0}


def locomo_streams(samples: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Session ids of each conversation's turns, in bench/locomo.py's ingest order."""
    return {s["sample_id"]: [f"session-{n}" for n, _, turns in locomo.sessions(s["conversation"])
                             for _ in turns] for s in samples}


def count_report(data: list[dict[str, Any]], batches: Sequence[int]) -> dict[str, Any]:
    corpus = {"bench": [m["session_id"] for m in generate_memories(10_000)]}
    return {"locomo_all_10": [extra_embeddings(locomo_streams(data), b) for b in batches],
            "bench_corpus_10k": [extra_embeddings(corpus, b) for b in batches]}


# --- embedding CPU ------------------------------------------------------------------------

def locomo_index_texts(data: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str | None]]:
    """Every LoCoMo turn's plain text, today's index text, and its predecessor's text."""
    from apps.memories import context

    plain, joined, previous = [], [], []
    for sample in data:
        for _, date, turns in locomo.sessions(sample["conversation"]):
            before = None
            for turn in turns:
                text = locomo.turn_text(turn, date)
                plain.append(text)
                joined.append(context.index_text(text, before))
                previous.append(before)
                before = text
    return plain, joined, previous


def time_embedder(data: list[dict[str, Any]], reps: int, batch: int) -> dict[str, Any]:
    """process_time per 1,000 memories of the embedder for (a) plain, (b) text+context (one
    call each over all turns), and, in calls of ``batch`` as ingest makes them, (a') plain and
    (c) a mix ingest (plain texts + each batch's extra predecessor): median of ``reps``
    interleaved repetitions."""
    from apps.memories.embeddings import get_embedder

    embedder = get_embedder().inner  # the configured model, without the metrics wrapper
    plain, joined, previous = locomo_index_texts(data)
    mix_calls = []
    for start in range(0, len(plain), batch):
        own = plain[start : start + batch]
        first = previous[start]  # a session's turns are contiguous: only the first can be extra
        mix_calls.append(own + ([first] if first is not None else []))
    plain_calls = [plain[start : start + batch] for start in range(0, len(plain), batch)]
    series = {"plain": lambda: embedder.embed(plain), "text_context": lambda: embedder.embed(joined),
              "plain_batched": lambda: [embedder.embed(c) for c in plain_calls],
              "mix_batched": lambda: [embedder.embed(c) for c in mix_calls]}
    embedder.embed(plain[:256])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in series}
    for _ in range(reps):
        for name, work in series.items():
            cpu = time.process_time()
            work()
            seconds[name].append(time.process_time() - cpu)
    per_1000 = {name: statistics.median(v) / len(plain) * 1000 for name, v in seconds.items()}
    tokens = {name: sum(sum(e.attention_mask) for e in embedder.tokenizer.encode_batch(texts))
              for name, texts in (("plain", plain), ("text_context", joined))}  # not padding
    return {"memories": len(plain), "reps": reps, "mix_batch": batch,
            "mix_extra_embeddings": sum(len(c) for c in mix_calls) - len(plain),
            "process_seconds": seconds, "process_seconds_per_1000_median": per_1000,
            "ratio_text_context_over_plain": per_1000["text_context"] / per_1000["plain"],
            "ratio_mix_over_plain_batched": per_1000["mix_batched"] / per_1000["plain_batched"],
            "tokens_per_memory": {n: t / len(plain) for n, t in tokens.items()},
            "embed_batch": embedder.batch_size}


# --- report -------------------------------------------------------------------------------

def choose(tuning: dict[str, Any]) -> str | None:
    """The mix setting with the best hybrid R@5 on the tuning part, then MRR."""
    mixes = [r for r in tuning.values() if r.get("alpha") is not None]
    if not mixes:
        return None
    best = max(mixes, key=lambda r: (round(r["overall"]["hybrid"]["R@5"], 6),
                                     round(r["overall"]["hybrid"]["MRR"], 6)))
    return best["setting"]


def chart(report: dict[str, Any], path: Path) -> None:
    """Hybrid (and vector) R@5 and MRR against alpha, text/off baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report.get("parts", {})
    tuning = parts.get("tuning", {})
    reporting = parts.get("reporting", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"hybrid": "#d95f02", "vector": "#1b9e77"}
    for ax, metric in zip(axes, ("R@5", "MRR"), strict=True):
        for mode, style in (("hybrid", "-"), ("vector", ":")):
            mixes = sorted((r["alpha"], r["overall"][mode][metric]) for r in tuning.values()
                           if r.get("alpha") is not None and mode in r["overall"])
            if mixes:
                ax.plot([a for a, _ in mixes], [v for _, v in mixes], "o" + style,
                        color=colors[mode], label=f"mix, {mode} (tuning)")
                for a, v in mixes:
                    ax.annotate(f"{v:.3f}", (a, v), textcoords="offset points", xytext=(0, 6),
                                ha="center", fontsize=7)
            for base, dash in (("text", "--"), ("off", "-.")):
                row = tuning.get(base)
                if row and mode in row["overall"]:
                    value = row["overall"][mode][metric]
                    ax.axhline(value, linestyle=dash, color=colors[mode], alpha=0.6, linewidth=1,
                               label=f"{base} context, {mode} (tuning) {value:.3f}")
        for name, row in reporting.items():
            if "hybrid" not in row["overall"]:
                continue
            x = row["alpha"] if row.get("alpha") is not None else 0.0
            marker = "D" if row.get("alpha") is not None else {"text": "s", "off": "v"}.get(name, "o")
            ax.plot([x], [row["overall"]["hybrid"][metric]], marker,
                    color="#7570b3", markersize=6,
                    label=f"reporting: {name}, hybrid {row['overall']['hybrid'][metric]:.3f}"
                    + (" (at x=0)" if row.get("alpha") is None else ""))
        ax.set_xlabel("alpha: v = normalize(e(turn) + alpha * e(previous turn))")
        ax.set_ylabel(f"evidence {metric}" if metric != "MRR" else "MRR (top 20)")
        ax.legend(fontsize=6.5, loc="best")
        ax.set_title(f"{metric}", fontsize=10)
    chosen = report.get("chosen")
    fig.suptitle(f"LoCoMo: conversation context as a vector mix, {report['timestamp'][:10]}"
                 + (f" (chosen on tuning: {chosen})" if chosen else "")
                 + (" (parts swapped)" if report.get("swapped") else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    for part, rows in report.get("parts", {}).items():
        print(f"\n{part} part")
        print(f"{'setting':12}{'mode':8}" + "".join(f"{m:>8}" for m in ("R@5", "R@10", "MRR")))
        for name, row in rows.items():
            for mode in ("hybrid", "vector"):
                if mode in row["overall"]:
                    o = row["overall"][mode]
                    print(f"{name:12}{mode:8}" + "".join(f"{o[m]:8.3f}" for m in ("R@5", "R@10", "MRR")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=locomo.DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--part", choices=("tuning", "reporting"), default="tuning",
                        help="which LoCoMo part to run (default tuning)")
    parser.add_argument("--swap", action="store_true",
                        help="tuning = conversations 6-10, reporting = 1-5")
    parser.add_argument("--alphas", default=DEFAULT_ALPHAS,
                        help="comma-separated MEMORYWEB_CONTEXT_MIX_WEIGHT values to run with "
                             f"MEMORYWEB_CONTEXT_EMBEDDING=mix (default {DEFAULT_ALPHAS}; '' for none)")
    parser.add_argument("--baselines", default="text,off",
                        help="comma-separated, of text (MEMORYWEB_CONTEXT_EMBEDDING=text) and "
                             "off (MEMORYWEB_INDEX_CONTEXT=false); default both, '' for none")
    parser.add_argument("--modes", default=DEFAULT_MODES,
                        help=f"recall modes to score (default {DEFAULT_MODES})")
    parser.add_argument("--cpu", action="store_true",
                        help="also time the embedder on all LoCoMo turns (plain, text+context, mix)")
    parser.add_argument("--reps", type=int, default=3, help="--cpu repetitions (median; default 3)")
    parser.add_argument("--cpu-batch", type=int, default=100,
                        help="--cpu: ingest batch size for the mix series (default 100)")
    parser.add_argument("--count-batches", default="100,500",
                        help="batch sizes to count extra embeddings for (default 100,500)")
    parser.add_argument("--output", type=Path, default=RESULTS / "context_mix.json",
                        help="JSON to merge results into (default bench/results/context_mix.json); "
                             "the chart is written next to it as .png")
    parser.add_argument("--conversations", type=int, default=0,
                        help="only the part's first N conversations (a smoke run; default all)")
    parser.add_argument("--fresh", action="store_true", help="start --output anew instead of merging")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if unknown := set(modes) - set(locomo.MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    settings_run = [b for b in args.baselines.split(",") if b]
    if bad := set(settings_run) - {"text", "off"}:
        parser.error(f"unknown baseline(s): {', '.join(sorted(bad))}")
    alphas = [float(a) for a in args.alphas.split(",") if a]
    if bad_alphas := [a for a in alphas if not 0 <= a <= 1]:
        parser.error(f"alpha(s) outside [0, 1] (MEMORYWEB_CONTEXT_MIX_WEIGHT's bound): {bad_alphas}")
    settings_run += [f"mix:{a:g}" for a in alphas]

    data = json.loads(args.data.read_text())
    samples = [data[i] for i in locomo.part_indices(args.swap)[args.part]]
    if args.conversations:
        samples = samples[: args.conversations]
    report: dict[str, Any] = {}
    if args.output.exists() and not args.fresh:
        report = json.loads(args.output.read_text())
        if report.get("swapped", False) != args.swap:
            parser.error(f"{args.output} holds a {'swapped' if report.get('swapped') else 'plain'} "
                         "run: use --fresh or another --output")
    report.update({"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                   "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                               "loadavg_at_start": os.getloadavg()},
                   "swapped": args.swap,
                   "partition": {n: [data[i]["sample_id"] for i in r]
                                 for n, r in locomo.part_indices(args.swap).items()}})
    report["extra_embedding_counts"] = count_report(
        data, [int(b) for b in args.count_batches.split(",") if b])

    def save() -> None:
        report["chosen"] = choose(report.get("parts", {}).get("tuning", {}))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        chart(report, args.output.with_suffix(".png"))

    data_dir = Path(tempfile.mkdtemp(prefix="memoryweb-context-mix-"))
    try:
        locomo.setup_django(data_dir)
        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="bench:context_mix", agent_id="locomo", role=Role.SYSTEM)
        if args.cpu:
            report["cpu"] = time_embedder(data, args.reps, args.cpu_batch)
            save()
        for name in settings_run:
            print(f"\n== {args.part} part, setting {name}", flush=True)
            result = run_setting(name, samples, principal, modes)
            print(f"  {name}: embedded {result['embedded']}, ingest CPU "
                  f"{result['ingest_cpu_seconds']:.1f} s, wall {result['wall_seconds']:.1f} s")
            report.setdefault("parts", {}).setdefault(args.part, {})[name] = result
            save()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    save()
    print_table(report)
    if report.get("chosen"):
        print(f"\nchosen on the tuning part (hybrid R@5, then MRR): {report['chosen']}")
    if "cpu" in report:
        c = report["cpu"]
        print("\nembedder process seconds per 1,000 memories: "
              + ", ".join(f"{k} {v:.2f}" for k, v in c["process_seconds_per_1000_median"].items())
              + f"; text+context / plain {c['ratio_text_context_over_plain']:.2f}, "
              f"mix / plain (both in --cpu-batch calls) {c['ratio_mix_over_plain_batched']:.2f}")
    for name, rows in report["extra_embedding_counts"].items():
        for r in rows:
            print(f"{name} batch {r['batch']}: {r['extra_embeddings']} extra embeddings of "
                  f"{r['memories']} memories ({r['with_context']} with a predecessor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
