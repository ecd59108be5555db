#!/usr/bin/env python
"""Conversation context as a vector mix: LoCoMo recall and embedding CPU, against the text context.

Today (``MEMORYWEB_INDEX_CONTEXT`` on) a memory with a session is embedded as
``content + "\\n\\n" + previous turn[:1000]`` (apps/memories/context.py ``index_text``): the
model reads about twice the tokens per memory. The alternative measured here embeds every
text alone and stores, for a memory whose session has a turn before it,

    v = normalize(e(content) + alpha * e(previous turn's content))

where e() is the plain, normalised embedding. Within a batch of a session's turns e(previous)
is the vector computed for that previous memory anyway; only a memory whose predecessor was
stored by an earlier batch needs one extra embedding (counted here: ``extra_embeddings``).
The mix is never recursive: e(previous) is the predecessor's plain embedding, not its
stored (mixed) vector, so an erased memory leaves nothing two turns later.

How the mix is swapped in, without editing app code (the monkeypatch lives in this script
only, and only while a mix setting runs). Ingest (apps/memories/services/ingestion.py
``_store``) embeds with ``indexing.embed_contents(context.index_texts(memories))``; both are
looked up on their modules at call time, so this script replaces, for the run:

* ``context.index_texts`` -> returns, per memory, a ``str`` subclass whose value is exactly
  today's index text (any other caller sees what it always did) and which also carries the
  memory's own content and its context's content (and whether that context is in the batch);
* ``indexing.embed_contents`` -> given those, embeds each content alone (and each
  predecessor's content, once) through the configured embedder and returns the mixed,
  normalised vectors; given anything else it is the original function.

The vectors go on through the write path unchanged (near-duplicate check, outbox, Chroma).
Everything else runs as in production: the context link (``context_memory``), the keyword
index's context column and its weight, fusion, priors, and the query embedding. Paths
that re-embed later (an edit, a dependent's re-index, a reindex) still embed today's text;
LoCoMo ingest never takes them. Plain embeddings are cached by text across the settings of
one run (the model's output for a text does not depend on alpha), so an alpha sweep costs
one embedding pass; the extra-embedding count is by memory, not by cache misses.

Settings: ``text`` (today's default), ``off`` (``MEMORYWEB_INDEX_CONTEXT=false``: no
context in either index), ``mix:ALPHA`` (vector mix; keyword context column as today).
Each is ingested into fresh namespaces and scored with bench/locomo.py's own ``ingest``
and ``evaluate`` (evidence recall@k, MRR), then its namespaces are deleted. The protocol
is bench/locomo.py's: choose alpha on the ``tuning`` part (hybrid R@5, then MRR), report the
chosen alpha and the baseline once on the ``reporting`` part (``--swap`` exchanges parts).

``--cpu`` also times the embedder (``get_embedder().inner.embed``, MEMORYWEB_EMBED_BATCH)
on all LoCoMo turns: (a) plain texts, (b) today's text+context, (c) what a mix ingest in
``--cpu-batch`` batches embeds (plain texts + each batch's extra predecessor; compared with
(a) embedded in the same batches), as ``time.process_time()`` seconds per 1,000 memories,
median of ``--reps`` interleaved repetitions. The extra-embedding counts for batch sizes
``--count-batches`` are computed from the data (LoCoMo's turns and bench/corpus.py's
synthetic corpus) without a server.

Results are merged into ``--output`` (by part and setting; default
bench/results/context_mix.json), and the chart (same name, .png) is redrawn: hybrid R@5 and
MRR against alpha on the tuning part, the text and off baselines as lines, the reporting
part's runs as markers.

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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench import locomo
    from bench.corpus import generate_memories
except ImportError:  # run as a script, bench/ is sys.path[0]
    import locomo
    from corpus import generate_memories

RESULTS = locomo.RESULTS
DEFAULT_ALPHAS = "0.25,0.4,0.55,0.7,1.0"
DEFAULT_MODES = "vector,lexical,hybrid"


# --- the mix ------------------------------------------------------------------------------

class IndexText(str):
    """Today's index text of a memory, carrying its parts for the mix."""

    content: str
    context: str | None
    context_in_batch: bool


class Mixer:
    """The patched ``index_texts``/``embed_contents`` pair for one alpha, with counters."""

    def __init__(self, alpha: float, cache: dict[str, np.ndarray]):
        self.alpha = alpha
        self.cache = cache
        self.memories = 0
        self.with_context = 0
        self.extra_embeddings = 0
        self.batches = 0

    def index_texts(self, memories: Sequence[Any]) -> list[str]:
        from apps.memories import context

        texts = self._original_index_texts(memories)  # today's texts; reads the contexts
        batch = {m.pk for m in memories}
        wanted = {m.context_memory_id for m in memories if m.context_memory_id is not None
                  and not context._CONTEXT_FIELD.is_cached(m)}
        contents = dict(context.Memory.objects.filter(pk__in=wanted).values_list("pk", "content")
                        ) if wanted else {}
        out = []
        for memory, text in zip(memories, texts, strict=True):
            item = IndexText(text)
            item.content, item.context, item.context_in_batch = memory.content, None, False
            if memory.context_memory_id is not None:
                item.context = (memory.context_memory.content
                                if context._CONTEXT_FIELD.is_cached(memory)
                                and memory.context_memory is not None
                                else contents.get(memory.context_memory_id))
                item.context_in_batch = memory.context_memory_id in batch
            out.append(item)
        return out

    def embed_contents(self, contents: Sequence[str]) -> np.ndarray | None:
        if not contents or not all(isinstance(c, IndexText) for c in contents):
            return self._original_embed_contents(contents)
        self.batches += 1
        self.memories += len(contents)
        own = [c.content for c in contents]
        predecessors = [c.context for c in contents if c.context and not c.context_in_batch]
        self.with_context += sum(1 for c in contents if c.context)
        self.extra_embeddings += len(predecessors)
        vectors = self.embed_plain(own + predecessors)
        mixed = np.stack([vectors[c.content] + self.alpha * vectors[c.context] if c.context
                          else vectors[c.content] for c in contents]).astype(np.float32)
        return mixed / np.clip(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12, None)

    def embed_plain(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        from apps.memories.embeddings import get_embedder

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            self.cache.update(zip(missing, get_embedder().embed(missing), strict=True))
        return {t: self.cache[t] for t in texts}

    @contextmanager
    def patched(self) -> Iterator[Mixer]:
        from apps.memories import context, indexing

        self._original_index_texts = context.index_texts
        self._original_embed_contents = indexing.embed_contents
        context.index_texts, indexing.embed_contents = self.index_texts, self.embed_contents
        try:
            yield self
        finally:
            context.index_texts = self._original_index_texts
            indexing.embed_contents = self._original_embed_contents

    def counts(self) -> dict[str, int]:
        return {"memories": self.memories, "with_context": self.with_context,
                "extra_embeddings": self.extra_embeddings, "embed_batches": self.batches}


def parse_setting(name: str) -> tuple[str, float | None]:
    if name in ("text", "off"):
        return name, None
    if name.startswith("mix:"):
        return "mix", float(name[4:])
    raise ValueError(f"unknown setting {name!r} (text, off or mix:ALPHA)")


def run_setting(name: str, samples: list[dict[str, Any]], principal, modes: tuple[str, ...],
                cache: dict[str, np.ndarray]) -> dict[str, Any]:
    """Ingest the part into fresh namespaces under one setting, score it, delete them."""
    from django.test import override_settings

    from apps.tenancy import namespaces

    kind, alpha = parse_setting(name)
    overrides = {"MEMORYWEB_INDEX_CONTEXT": kind != "off"}
    mixer = Mixer(alpha or 0.0, cache)
    started = time.perf_counter()
    try:
        with override_settings(**overrides), (mixer.patched() if kind == "mix" else _nothing()):
            cpu = time.process_time()
            known = locomo.ingest(samples, principal)
            ingest_cpu = time.process_time() - cpu
            result = locomo.evaluate(samples, known, principal, modes)
    finally:
        for sample in samples:
            try:
                namespaces.delete(principal, sample["sample_id"].lower())
            except Exception as exc:  # never created (a failed ingest)
                print(f"  (namespace {sample['sample_id']}: {exc})", file=sys.stderr)
    result.update({"setting": name, "alpha": alpha, "settings": overrides,
                   "ingest_cpu_seconds": ingest_cpu, "wall_seconds": time.perf_counter() - started})
    if kind == "mix":
        result["mix"] = mixer.counts()
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


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
                        help=f"comma-separated mix weights to run (default {DEFAULT_ALPHAS}; "
                             "'' for none)")
    parser.add_argument("--baselines", default="text,off",
                        help="comma-separated, of text (context as today) and off "
                             "(MEMORYWEB_INDEX_CONTEXT=false); default both, '' for none")
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
    settings_run += [f"mix:{float(a):g}" for a in args.alphas.split(",") if a]

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
        cache: dict[str, np.ndarray] = {}
        for name in settings_run:
            print(f"\n== {args.part} part, setting {name}", flush=True)
            result = run_setting(name, samples, principal, modes, cache)
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
