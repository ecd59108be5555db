"""bench/rollups.py's events: Claude Code-like sessions on a day (prompts, tool calls and
results, answers: people, projects, numbers, dates from bench/corpus.py's vocabulary), in
time order, as capture would send them.

A module of its own so the command (bench/rollups.py) stays the loading, the builds it
measures and the run; the report is bench/rollups_report.py's.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

try:
    from bench.corpus import EXTRAS, PEOPLE, TEMPLATES, _fields
except ImportError:  # run as a script, bench/ is sys.path[0]
    from corpus import EXTRAS, PEOPLE, TEMPLATES, _fields

UTC = dt.UTC


def _prompt(rng: random.Random, f: dict[str, Any]) -> str:
    return rng.choice((
        f"Why did the {f['proj']} {f['event']} fail on {f['date']}? {f['p']} says {f['tool']} showed "
        f"{f['n']} errors.",
        f"Please move {f['task']} for {f['proj']} to {f['tool2']}; {f['p2']} in {f['city']} approved "
        f"{f['n']} hours.",
        f"Can you check with {f['p']} whether the {f['proj']} {f['event2']} is still planned for "
        f"{f['date2']}?",
        f"Summarise what {f['p']} and {f['p2']} decided about {f['proj']} before {f['date2']}."))


def _answer(rng: random.Random, f: dict[str, Any]) -> str:
    kinds = rng.sample(list(TEMPLATES), rng.randint(1, 3))
    parts = [rng.choice(TEMPLATES[kind]).format(**f) for kind in kinds]
    parts += [extra.format(**f) for extra in rng.sample(EXTRAS, rng.randint(0, 2))]
    return " ".join(parts)


def _tool_call(rng: random.Random, f: dict[str, Any]) -> str:
    proj = f["proj"].lower()
    return rng.choice((f"Bash: kubectl logs deploy/{proj}-api --since=1h | tail -n 60",
                       f"Bash: pytest tests/test_{proj}.py -q -x", f"Bash: git log --oneline -n {f['n2']}",
                       f'Read: {{"file_path": "/home/dev/{proj}/src/{f["task"].replace(" ", "_")}.py"}}',
                       f'Grep: {{"pattern": "{f["task"]}", "path": "/home/dev/{proj}/src"}}'))


def _tool_result(rng: random.Random, f: dict[str, Any]) -> str:
    lines = [f"2026-04-{rng.randint(10, 28)}T{rng.randint(10, 23)}:{rng.randint(10, 59)}Z "
             f"{rng.choice(('INFO', 'WARN', 'ERROR'))} {f['proj'].lower()}-api request "
             f"{rng.randint(1000, 99999)} "
             f"took {rng.randint(2, 4000)} ms ({f['tool']}, owner {rng.choice(PEOPLE)})"
             for _ in range(rng.randint(1, 12))]
    return f"{_tool_call(rng, f).split(':')[0]} result: " + "\n".join(lines)


def _session_types(rng: random.Random, size: int) -> list[str]:
    """session_start, turns (prompt, 0-3 tool call + result, answer, stop), session_end."""
    types = ["session_start"]
    while len(types) < size - 1:
        types.append("user_message")
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            types += ["tool_call", "tool_result"]
        types += ["assistant_message", "assistant_stop"]
    return [*types[:size - 1], "session_end"] if size > 1 else ["session_start"]


def day_events(day: dt.date, count: int, rng: random.Random, prefix: str) -> list[dict[str, Any]]:
    """``count`` events on ``day``: sessions of 40-400 events starting between 06:00 and
    20:00 UTC, a few seconds to minutes apart, now and then a pause longer than the
    segment gap; in time order, as capture would send them."""
    events: list[dict[str, Any]] = []
    sizes, left = [], count
    while left > 0:
        sizes.append(min(left, rng.randint(40, 400)))
        left -= sizes[-1]
    end_of_day = dt.datetime.combine(day, dt.time(23, 59, 59), UTC)
    for number, size in enumerate(sizes):
        session = f"{prefix}-{day:%Y%m%d}-{number:03d}"
        start = dt.datetime.combine(day, dt.time(6), UTC) + dt.timedelta(seconds=rng.randint(0, 14 * 3600))
        offsets, at = [], 0.0
        for _ in range(size):
            at += rng.expovariate(1 / 20) + (rng.uniform(2100, 3600) if rng.random() < 0.01 else 0)
            offsets.append(at)
        room = (end_of_day - start).total_seconds()
        scale = min(1.0, room / offsets[-1])  # the session ends the same day
        f = _fields(rng)
        for i, kind in enumerate(_session_types(rng, size)):
            if kind == "user_message":
                f = _fields(rng)  # each turn its own topic
            text = {"user_message": _prompt, "assistant_message": _answer, "tool_call": _tool_call,
                    "tool_result": _tool_result}.get(kind)
            event = {"id": f"{session}-{i:04d}", "event_type": kind, "session_id": session,
                     "occurred_at": (start + dt.timedelta(seconds=offsets[i] * scale)).isoformat(),
                     "metadata": {"capture": "claude-code", "cwd": f"/home/dev/{f['proj'].lower()}"}}
            if text is not None:
                event["text"] = text(rng, f)
            events.append(event)
    return sorted(events, key=lambda e: e["occurred_at"])
